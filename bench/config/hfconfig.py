"""The text-model part of a Hugging Face ``config.json``, validated and normalised.

Registry entries store their architecture in these same field names, so a
``config.json`` handed to ``bench plan --config`` and a registry YAML go through
one parser. Family defaults (Gemma ties its embeddings, Qwen2 puts biases on
q/k/v, Llama 4 interleaves chunked and global attention) are filled in here,
once, so the estimator never guesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.config.files import read_regular_file
from bench.errors import UserError

ModelType = Literal[
    "llama", "mistral", "ministral3", "mixtral", "qwen2", "gemma", "gemma2", "llama4_text"
]
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ModelType.__args__  # type: ignore[attr-defined]
# Multimodal wrappers whose `text_config` is one of the types above.
WRAPPER_MODEL_TYPES = {"llama4": "llama4_text", "mistral3": "ministral3"}

LayerType = Literal["full_attention", "sliding_attention", "chunked_attention"]

# Bounds on a shape, checked before any arithmetic: the estimator walks layers (and, for the largest
# context that fits, halves the context range), so a config of 10^8 layers would never return. Each is
# far beyond any published model (the largest have about 130 layers, hidden 16,384, 128 heads, a
# vocabulary of 260k, 384 experts and a context of 10M tokens) and well inside what the arithmetic
# handles in well under a second.
MAX_LAYERS = 1_000
MAX_HIDDEN = 1_000_000
MAX_HEADS = 100_000
MAX_INTERMEDIATE = 10_000_000
MAX_VOCAB = 10_000_000
MAX_EXPERTS = 10_000
MAX_POSITIONS = 1_000_000_000
# A config.json is a few KB (tens with a quantization config listing modules); anything past this is not one.
MAX_CONFIG_BYTES = 16 * 2**20

# Defaults that transformers applies per family when a config.json omits the field.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"tie_word_embeddings": False},
    "mistral": {"tie_word_embeddings": False, "sliding_window": 4096},
    "ministral3": {"tie_word_embeddings": False, "head_dim": 128},
    "mixtral": {"tie_word_embeddings": False, "num_experts_per_tok": 2, "num_local_experts": 8},
    "qwen2": {"tie_word_embeddings": False},
    "gemma": {"tie_word_embeddings": True, "head_dim": 256},
    "gemma2": {"tie_word_embeddings": True, "head_dim": 256, "sliding_window": 4096},
    "llama4_text": {
        "tie_word_embeddings": False,
        "head_dim": 128,
        "num_local_experts": 16,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": 1,
        "attention_chunk_size": 8192,
        "no_rope_layer_interval": 4,
    },
}


class TextConfig(BaseModel):
    """Architecture numbers of a decoder, in ``config.json`` field names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: ModelType
    hidden_size: int = Field(gt=0, le=MAX_HIDDEN)
    num_hidden_layers: int = Field(gt=0, le=MAX_LAYERS)
    num_attention_heads: int = Field(gt=0, le=MAX_HEADS)
    num_key_value_heads: int | None = Field(None, gt=0, le=MAX_HEADS,
                                            description="Defaults to num_attention_heads (MHA)")
    head_dim: int | None = Field(None, gt=0, le=MAX_HIDDEN,
                                 description="Defaults to hidden_size / num_attention_heads")
    intermediate_size: int = Field(gt=0, le=MAX_INTERMEDIATE,
                                   description="Dense MLP width, or one expert's width in an MoE")
    vocab_size: int = Field(gt=0, le=MAX_VOCAB)
    max_position_embeddings: int = Field(gt=0, le=MAX_POSITIONS)
    tie_word_embeddings: bool = False
    attention_bias: bool = Field(False, description="Bias on q/k/v/o (llama, gemma); qwen2 always has q/k/v bias")
    mlp_bias: bool = False
    sliding_window: int | None = Field(None, gt=0, le=MAX_POSITIONS)
    use_sliding_window: bool | None = Field(None, description="qwen2 only: windows are off unless this is true")
    max_window_layers: int | None = Field(None, ge=0, le=MAX_LAYERS,
                                          description="qwen2 only: layers from this index on slide")
    layer_types: list[LayerType] | None = Field(None, max_length=MAX_LAYERS)
    # Mixture of experts (mixtral, llama4_text).
    num_local_experts: int | None = Field(None, gt=0, le=MAX_EXPERTS)
    num_experts_per_tok: int | None = Field(None, gt=0, le=MAX_EXPERTS)
    # Llama 4 specifics.
    intermediate_size_mlp: int | None = Field(None, gt=0, le=MAX_INTERMEDIATE,
                                              description="llama4: width of the dense layers' MLP")
    interleave_moe_layer_step: int | None = Field(None, gt=0, le=MAX_LAYERS)
    moe_layers: list[int] | None = Field(None, max_length=MAX_LAYERS)
    attention_chunk_size: int | None = Field(None, gt=0, le=MAX_POSITIONS)
    no_rope_layer_interval: int | None = Field(None, gt=0, le=MAX_LAYERS)
    no_rope_layers: list[int] | None = Field(None, max_length=MAX_LAYERS)

    @model_validator(mode="after")
    def _check_lengths(self) -> TextConfig:
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers"
            )
        if self.is_moe and self.num_experts_per_tok > self.num_local_experts:  # type: ignore[operator]
            raise ValueError("num_experts_per_tok exceeds num_local_experts")
        # Shapes no model can have: the engines split the hidden size into heads, and share each KV head
        # among a whole number of query heads.
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_attention_heads} (and no head_dim is given)")
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {self.kv_heads}")
        return self

    # --- derived shape -----------------------------------------------------

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.model_type in ("mixtral", "llama4_text")

    @property
    def shared_experts(self) -> int:
        """Experts every token passes through (Llama 4 has one per MoE layer)."""
        return 1 if self.model_type == "llama4_text" else 0

    def moe_layer_indices(self) -> set[int]:
        if not self.is_moe:
            return set()
        if self.model_type == "mixtral":
            return set(range(self.num_hidden_layers))
        if self.moe_layers is not None:
            return set(self.moe_layers)
        step = self.interleave_moe_layer_step or 1
        return set(range(step - 1, self.num_hidden_layers, step))

    def attention_layer_types(self) -> list[LayerType]:
        """Per layer: full, sliding-window or chunked attention (which caps its KV cache)."""
        n = self.num_hidden_layers
        if self.layer_types is not None:
            return list(self.layer_types)
        if self.model_type == "llama4_text":
            if self.no_rope_layers is not None:
                # 1 = a RoPE layer with chunked local attention, 0 = a global NoPE layer.
                return ["chunked_attention" if r else "full_attention" for r in self.no_rope_layers]
            interval = self.no_rope_layer_interval or 4
            return ["full_attention" if (i + 1) % interval == 0 else "chunked_attention" for i in range(n)]
        if self.model_type == "gemma2":
            return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
        if self.model_type == "qwen2":
            if not (self.use_sliding_window and self.sliding_window):
                return ["full_attention"] * n
            first = self.max_window_layers or 0
            return ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
        if self.sliding_window is not None:
            return ["sliding_attention"] * n
        return ["full_attention"] * n

    def kv_window(self, layer_type: LayerType) -> int | None:
        """Most tokens a layer of this type keeps in its KV cache; None means unbounded."""
        if layer_type == "sliding_attention":
            return self.sliding_window
        if layer_type == "chunked_attention":
            return self.attention_chunk_size
        return None


def from_hf_dict(raw: dict[str, Any], origin: str, strict: bool = False) -> TextConfig:
    """Build a :class:`TextConfig` from a parsed ``config.json`` of a supported family.

    A wrapper config (``llama4``, ``mistral3``) contributes its ``text_config``.
    With ``strict`` (registry YAML) an unknown field is an error; otherwise
    (a real ``config.json``) fields the estimator does not use, such as rope
    scaling, dtype or token ids, are dropped.
    """
    model_type = raw.get("model_type")
    if not isinstance(model_type, str | None):
        raise UserError(f"{origin}: model_type must be a string, not {type(model_type).__name__}")
    if model_type in WRAPPER_MODEL_TYPES:
        if not isinstance(raw.get("text_config") or {}, dict):
            raise UserError(f"{origin}: text_config must be an object, not {type(raw['text_config']).__name__}")
        text = dict(raw.get("text_config") or {})
        text.setdefault("model_type", WRAPPER_MODEL_TYPES[model_type])
        if "tie_word_embeddings" in raw and "tie_word_embeddings" not in text:
            text["tie_word_embeddings"] = raw["tie_word_embeddings"]
        raw, model_type = text, text["model_type"]
    if model_type not in SUPPORTED_MODEL_TYPES:
        supported = ", ".join(SUPPORTED_MODEL_TYPES + tuple(WRAPPER_MODEL_TYPES))
        raise UserError(f"{origin}: model_type {model_type!r} is not supported; supported: {supported}")
    given = raw if strict else {k: v for k, v in raw.items() if k in TextConfig.model_fields}
    fields = {**_FAMILY_DEFAULTS[model_type], **given}
    return validate_text_config(fields, origin)


def validate_text_config(fields: dict[str, Any], origin: str) -> TextConfig:
    try:
        return TextConfig.model_validate(fields)
    except ValidationError as err:
        raise UserError(f"{origin}: {describe_validation_error(err)}") from None


def load_hf_config(path: Path) -> TextConfig:
    """A user's config.json: a regular file of at most MAX_CONFIG_BYTES (never a FIFO or /dev/zero, which
    would hang the read), JSON nested no deeper than Python's parser goes, then bounded field by field."""
    try:
        raw = json.loads(read_regular_file(path, MAX_CONFIG_BYTES))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except RecursionError:
        raise UserError(f"{path}: not a config.json (nested too deeply to parse)") from None
    except (OSError, ValueError) as err:  # ValueError: not JSON, not UTF-8, not a regular file, too large
        raise UserError(f"{path}: not a readable JSON config ({err})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config.json must be a JSON object")
    return from_hf_dict(raw, str(path))


def refuse_remote_code(config_path: Path, allowed: bool) -> None:
    """Refuse a checkpoint whose config maps its classes to code shipped in the repository (`auto_map`),
    unless its registry entry opted in at a pinned revision: with remote code off, transformers would
    quietly load the checkpoint as the built-in class of its model_type, a different model than claimed."""
    if allowed:
        return
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return  # no readable config: the engine's own loading error says more
    if isinstance(raw, dict) and raw.get("auto_map"):
        raise UserError(f"{config_path}: auto_map asks to run the repository's own code "
                        f"({', '.join(sorted(raw['auto_map']))}); bench runs it only for a registry entry with "
                        "trust_remote_code: true at a pinned revision")


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
