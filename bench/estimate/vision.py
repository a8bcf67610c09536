"""Parameters of a multimodal checkpoint's vision tower and projector, counted from its config.json.

The text parser (`bench.config.hfconfig`) keeps only a wrapper's `text_config`; the image side of the
same checkpoint still takes memory when an engine loads it whole (vLLM, transformers), so a plan has
to count it. Each count follows the modules transformers builds for that model type, tensor by
tensor (tests/test_vision.py builds the same configs on the meta device and requires equal counts).
Fields a config omits take the defaults of transformers' config class for that tower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.config.hfconfig import MAX_HIDDEN, MAX_INTERMEDIATE, MAX_LAYERS
from bench.errors import UserError

# Channels and image sides far beyond any published tower (3 channels, a few thousand pixels a side).
MAX_CHANNELS = 64
MAX_IMAGE_SIDE = 100_000


@dataclass(frozen=True)
class VisionCounts:
    """The vision encoder and the projector that maps its features into the text model's embedding space."""

    tower: int
    projector: int

    @property
    def total(self) -> int:
        return self.tower + self.projector


class _Fields:
    """A config dict's fields, read with the tower's defaults and checked to be bounded whole numbers."""

    def __init__(self, raw: Any, defaults: dict[str, Any], origin: str, section: str = ""):
        if not isinstance(raw, dict):
            raise UserError(f"{origin}: {section} must be an object, not {type(raw).__name__}")
        self.raw, self.defaults, self.where = raw, defaults, f"{origin}: {section}{'.' if section else ''}"

    def int(self, key: str, bound: int) -> int:
        value = self.raw.get(key, self.defaults.get(key))
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= bound:
            raise UserError(f"{self.where}{key}: must be a whole number from 1 to {bound:,}, not {value!r}")
        return value

    def patch_grid(self) -> tuple[int, int]:
        """(patch_size, image_size) of a tower that cuts a square image into square patches: at least one."""
        patch, side = self.int("patch_size", MAX_IMAGE_SIDE), self.int("image_size", MAX_IMAGE_SIDE)
        if patch > side:
            raise UserError(f"{self.where}patch_size {patch} exceeds image_size {side}")
        return patch, side

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, self.defaults.get(key))
        if not isinstance(value, bool):
            raise UserError(f"{self.where}{key}: must be true or false, not {value!r}")
        return value


def _layer_norm(width: int) -> int:
    return 2 * width  # weight and bias


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _vision_fields(raw: dict[str, Any], defaults: dict[str, Any], origin: str,
                   when_absent: dict[str, Any] | None = None) -> _Fields:
    """`vision_config`, or the tower the wrapper's config class builds when config.json has none."""
    vision = raw.get("vision_config")
    if vision is None:
        return _Fields({}, when_absent or defaults, origin, "vision_config")
    return _Fields(vision, defaults, origin, "vision_config")


def _text_hidden(raw: dict[str, Any], origin: str) -> int:
    return _Fields(raw.get("text_config"), {}, origin, "text_config").int("hidden_size", MAX_HIDDEN)


# --- mistral3: Pixtral encoder + Mistral3MultiModalProjector ---------------------------------------------

_PIXTRAL = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_channels": 3,
            "patch_size": 16}
# Mistral3Config builds this Pixtral encoder when config.json has no vision_config.
_MISTRAL3_DEFAULT_VISION = {**_PIXTRAL, "patch_size": 14}


def _mistral3(raw: dict[str, Any], origin: str) -> VisionCounts:
    v = _vision_fields(raw, _PIXTRAL, origin, _MISTRAL3_DEFAULT_VISION)
    top = _Fields(raw, {"spatial_merge_size": 2, "multimodal_projector_bias": False}, origin)
    h, width = v.int("hidden_size", MAX_HIDDEN), v.int("intermediate_size", MAX_INTERMEDIATE)
    patch, channels = v.int("patch_size", MAX_IMAGE_SIDE), v.int("num_channels", MAX_CHANNELS)
    # Each layer: q, k, v, o (h x h, no bias), a gated MLP (gate, up, down), two RMSNorms.
    layer = 4 * h * h + 3 * h * width + 2 * h
    tower = channels * patch * patch * h + h + v.int("num_hidden_layers", MAX_LAYERS) * layer  # patch conv, ln_pre
    text, merge = _text_hidden(raw, origin), top.int("spatial_merge_size", MAX_IMAGE_SIDE)
    bias = top.flag("multimodal_projector_bias")
    projector = (h  # RMSNorm over the encoder's features
                 + h * merge * merge * h  # patch merger: merge x merge neighbours into one feature
                 + _linear(h * _feature_layers(raw, origin), text, bias) + _linear(text, text, bias))
    return VisionCounts(tower, projector)


def _feature_layers(raw: dict[str, Any], origin: str) -> int:
    """Mistral 3 may concatenate the features of several encoder layers: linear_1 widens by that many."""
    chosen = raw.get("vision_feature_layer", -1)
    if isinstance(chosen, list) and chosen and all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
        return len(chosen)
    if isinstance(chosen, int) and not isinstance(chosen, bool):
        return 1
    raise UserError(f"{origin}: vision_feature_layer: must be a layer index or a list of them, not {chosen!r}")


# --- llama4: Llama4VisionModel (with its pixel-shuffle adapter) + Llama4MultiModalProjector ----------------

_LLAMA4_VISION = {"hidden_size": 768, "intermediate_size": 5632, "num_hidden_layers": 34, "num_channels": 3,
                  "image_size": 448, "patch_size": 14, "vision_output_dim": 7680, "projector_input_dim": 4096,
                  "projector_output_dim": 4096}


def _llama4(raw: dict[str, Any], origin: str) -> VisionCounts:
    v = _vision_fields(raw, _LLAMA4_VISION, origin)
    h, width = v.int("hidden_size", MAX_HIDDEN), v.int("intermediate_size", MAX_INTERMEDIATE)
    patch, side = v.patch_grid()
    # Each layer: q, k, v, o with biases, an fc1/fc2 MLP with biases, two LayerNorms.
    layer = 4 * _linear(h, h, True) + _linear(h, width, True) + _linear(width, h, True) + 2 * _layer_norm(h)
    positions = (side // patch) ** 2 + 1  # one per patch, and one for the class embedding
    # The pixel-shuffle adapter: fc1 reads the shuffled features (intermediate_size wide), fc2 is square.
    adapter = (width * v.int("projector_input_dim", MAX_INTERMEDIATE)
               + v.int("projector_output_dim", MAX_INTERMEDIATE) ** 2)
    tower = (v.int("num_channels", MAX_CHANNELS) * patch * patch * h  # patch embedding (unfold + linear)
             + h + positions * h  # class embedding, positional embedding
             + 2 * _layer_norm(h)  # before and after the encoder
             + v.int("num_hidden_layers", MAX_LAYERS) * layer + adapter)
    projector = v.int("vision_output_dim", MAX_INTERMEDIATE) * _text_hidden(raw, origin)
    return VisionCounts(tower, projector)


# --- gemma3: SigLIP vision model + Gemma3MultiModalProjector -----------------------------------------------

_SIGLIP = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_channels": 3,
           "image_size": 224, "patch_size": 16, "vision_use_head": True}


def _gemma3(raw: dict[str, Any], origin: str) -> VisionCounts:
    v = _vision_fields(raw, _SIGLIP, origin)
    h, width = v.int("hidden_size", MAX_HIDDEN), v.int("intermediate_size", MAX_INTERMEDIATE)
    patch, side = v.patch_grid()
    mlp = _linear(h, width, True) + _linear(width, h, True)
    layer = 4 * _linear(h, h, True) + mlp + 2 * _layer_norm(h)
    tower = (_linear(v.int("num_channels", MAX_CHANNELS) * patch * patch, h, True)  # patch conv, with bias
             + (side // patch) ** 2 * h  # position embedding, one per patch
             + v.int("num_hidden_layers", MAX_LAYERS) * layer
             + _layer_norm(h))  # post_layernorm
    if v.flag("vision_use_head"):  # attention-pooling head: probe, in/out projections, LayerNorm, MLP
        tower += h + _linear(h, 3 * h, True) + _linear(h, h, True) + _layer_norm(h) + mlp
    # mm_input_projection_weight (vision hidden x text hidden, no bias) and mm_soft_emb_norm (RMSNorm).
    projector = h * _text_hidden(raw, origin) + h
    return VisionCounts(tower, projector)


VISION_COUNTERS: dict[str, Callable[[dict[str, Any], str], VisionCounts]] = {
    "mistral3": _mistral3, "llama4": _llama4, "gemma3": _gemma3,
}


def count_vision(raw: dict[str, Any], origin: str) -> VisionCounts | None:
    """The vision tower and projector of a multimodal config.json; None for a text-only model type."""
    model_type = raw.get("model_type")
    counter = VISION_COUNTERS.get(model_type) if isinstance(model_type, str) else None
    return counter(raw, origin) if counter is not None else None
