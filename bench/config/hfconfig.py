"""The text-model part of a Hugging Face ``config.json``, validated and normalised.

Registry entries store their architecture in these same field names, so a
``config.json`` handed to ``bench plan --config`` and a registry YAML go through
one parser. Family defaults (Gemma ties its embeddings, Qwen2 puts biases on
q/k/v, Llama 4 interleaves chunked and global attention) are filled in here,
once, so the estimator never guesses.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from bench.config.files import read_regular_file
from bench.config.strict import Strict, ValidationError, field, validator
from bench.errors import UserError

ModelType = Literal[
    "llama", "mistral", "ministral3", "mixtral", "qwen2", "gemma", "gemma2", "llama4_text",
    "qwen3", "gemma3_text", "gpt_oss", "qwen3_moe", "deepseek_v3", "deepseek_v2", "phi3", "olmo2", "granite",
    "qwen2_moe",
]
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ModelType.__args__  # type: ignore[attr-defined]
# Multimodal wrappers whose `text_config` is one of the types above.
WRAPPER_MODEL_TYPES = {"llama4": "llama4_text", "mistral3": "ministral3", "gemma3": "gemma3_text"}

# Families with multi-head latent attention (deepseek): a per-token latent in the cache instead of K and V.
MLA_MODEL_TYPES = ("deepseek_v2", "deepseek_v3")

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
    "qwen3": {"tie_word_embeddings": False, "head_dim": 128},
    # A Gemma 3 checkpoint's text_config leaves most of its shape to these (transformers 5.19,
    # models/gemma3/configuration_gemma3.py, Gemma3TextConfig): gemma-3-4b-it names only four fields.
    "gemma3_text": {
        "tie_word_embeddings": True, "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
        "max_position_embeddings": 131_072, "sliding_window": 4096, "sliding_window_pattern": 6,
    },
    "gpt_oss": {"tie_word_embeddings": False, "head_dim": 64, "num_local_experts": 128, "num_experts_per_tok": 4,
                "sliding_window": 128, "attention_bias": True},
    "qwen3_moe": {"tie_word_embeddings": False, "num_experts": 128, "num_experts_per_tok": 8,
                  "moe_intermediate_size": 768, "decoder_sparse_step": 1},
    "qwen2_moe": {"tie_word_embeddings": False, "num_experts": 60, "num_experts_per_tok": 4,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "decoder_sparse_step": 1,
                  "qkv_bias": True},
    "deepseek_v3": {"tie_word_embeddings": False, "n_routed_experts": 256, "n_shared_experts": 1,
                    "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "first_k_dense_replace": 3,
                    "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                    "v_head_dim": 128},
    "deepseek_v2": {"tie_word_embeddings": False, "n_routed_experts": 64, "n_shared_experts": 2,
                    "moe_intermediate_size": 1407, "first_k_dense_replace": 0, "kv_lora_rank": 512,
                    "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128},
    "phi3": {"tie_word_embeddings": False},
    "olmo2": {"tie_word_embeddings": False},
    "granite": {"tie_word_embeddings": False},
}


class TextConfig(Strict):
    """Architecture numbers of a decoder, in ``config.json`` field names."""

    model_type: ModelType
    hidden_size: int = field(gt=0, le=MAX_HIDDEN)
    num_hidden_layers: int = field(gt=0, le=MAX_LAYERS)
    num_attention_heads: int = field(gt=0, le=MAX_HEADS)
    num_key_value_heads: int | None = field(None, gt=0, le=MAX_HEADS,
                                            description="Defaults to num_attention_heads (MHA)")
    head_dim: int | None = field(None, gt=0, le=MAX_HIDDEN,
                                 description="Defaults to hidden_size / num_attention_heads")
    intermediate_size: int = field(gt=0, le=MAX_INTERMEDIATE,
                                   description="Dense MLP width, or one expert's width in an MoE")
    vocab_size: int = field(gt=0, le=MAX_VOCAB)
    max_position_embeddings: int = field(gt=0, le=MAX_POSITIONS)
    tie_word_embeddings: bool = False
    attention_bias: bool = field(False, description="Bias on q/k/v/o (llama, gemma); qwen2 always has q/k/v bias")
    mlp_bias: bool = False
    sliding_window: int | None = field(None, gt=0, le=MAX_POSITIONS)
    use_sliding_window: bool | None = field(None, description="qwen2 only: windows are off unless this is true")
    max_window_layers: int | None = field(None, ge=0, le=MAX_LAYERS,
                                          description="qwen2 only: layers from this index on slide")
    layer_types: list[LayerType] | None = field(None, max_length=MAX_LAYERS)
    sliding_window_pattern: int | None = field(None, gt=0, le=MAX_LAYERS,
                                               description="gemma3: every n-th layer is global, the rest slide")
    # Mixture of experts. Each family names its routed expert count its own way: num_local_experts
    # (mixtral, llama4_text, gpt_oss), num_experts (qwen2_moe, qwen3_moe), n_routed_experts (deepseek).
    num_local_experts: int | None = field(None, gt=0, le=MAX_EXPERTS)
    num_experts: int | None = field(None, ge=0, le=MAX_EXPERTS)
    n_routed_experts: int | None = field(None, gt=0, le=MAX_EXPERTS)
    num_experts_per_tok: int | None = field(None, gt=0, le=MAX_EXPERTS)
    moe_intermediate_size: int | None = field(None, gt=0, le=MAX_INTERMEDIATE,
                                              description="One routed expert's width (qwen MoE, deepseek)")
    shared_expert_intermediate_size: int | None = field(None, gt=0, le=MAX_INTERMEDIATE,
                                                        description="qwen2_moe: the shared expert's width")
    n_shared_experts: int | None = field(None, ge=0, le=MAX_EXPERTS,
                                         description="deepseek: shared experts, fused into one MLP")
    first_k_dense_replace: int | None = field(None, ge=0, le=MAX_LAYERS,
                                              description="deepseek: the first k layers have a dense MLP")
    decoder_sparse_step: int | None = field(None, gt=0, le=MAX_LAYERS,
                                            description="qwen MoE: every n-th layer is an MoE layer")
    mlp_only_layers: list[int] | None = field(None, max_length=MAX_LAYERS,
                                              description="qwen MoE: layers with a dense MLP")
    qkv_bias: bool | None = field(None, description="qwen2_moe: bias on q/k/v (never on o)")
    # Multi-head latent attention (deepseek): K and V come out of a shared low-rank latent.
    q_lora_rank: int | None = field(None, gt=0, le=MAX_HIDDEN, description="None: a full-rank q_proj")
    kv_lora_rank: int | None = field(None, gt=0, le=MAX_HIDDEN)
    qk_nope_head_dim: int | None = field(None, gt=0, le=MAX_HIDDEN)
    qk_rope_head_dim: int | None = field(None, gt=0, le=MAX_HIDDEN)
    v_head_dim: int | None = field(None, gt=0, le=MAX_HIDDEN)
    # Llama 4 specifics.
    intermediate_size_mlp: int | None = field(None, gt=0, le=MAX_INTERMEDIATE,
                                              description="llama4: width of the dense layers' MLP")
    interleave_moe_layer_step: int | None = field(None, gt=0, le=MAX_LAYERS)
    moe_layers: list[int] | None = field(None, max_length=MAX_LAYERS)
    attention_chunk_size: int | None = field(None, gt=0, le=MAX_POSITIONS)
    no_rope_layer_interval: int | None = field(None, gt=0, le=MAX_LAYERS)
    no_rope_layers: list[int] | None = field(None, max_length=MAX_LAYERS)

    @validator
    def _check_lengths(self) -> TextConfig:
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers"
            )
        if self.is_moe and (self.num_experts_per_tok or 1) > self.routed_experts:
            raise ValueError(f"num_experts_per_tok exceeds the {self.routed_experts} routed experts")
        if self.model_type in MLA_MODEL_TYPES and None in (self.kv_lora_rank, self.qk_nope_head_dim,
                                                           self.qk_rope_head_dim, self.v_head_dim):
            raise ValueError("multi-head latent attention needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim "
                             "and v_head_dim")
        # Shapes no model can have: the engines split the hidden size into heads, and share each KV head
        # among a whole number of query heads.
        if self.head_dim is None and not self.is_mla and self.hidden_size % self.num_attention_heads:
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
    def is_mla(self) -> bool:
        """Multi-head latent attention (deepseek): K and V are expanded from a cached low-rank latent."""
        return self.model_type in MLA_MODEL_TYPES

    @property
    def head_size(self) -> int:
        """Width of one query/key head (with MLA: its no-RoPE and RoPE parts together)."""
        if self.is_mla:
            return self.qk_nope_head_dim + self.qk_rope_head_dim  # type: ignore[operator]
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def value_head_size(self) -> int:
        """Width of one value head: the key's, except with MLA."""
        return self.v_head_dim if self.is_mla else self.head_size  # type: ignore[return-value]

    @property
    def routed_experts(self) -> int:
        """Routed experts of an MoE layer (0 for a dense model), whatever the family calls the field."""
        if self.model_type in ("qwen2_moe", "qwen3_moe"):
            return self.num_experts or 0
        if self.model_type in MLA_MODEL_TYPES:
            return self.n_routed_experts or 0
        if self.model_type in ("mixtral", "llama4_text", "gpt_oss"):
            return self.num_local_experts or 0
        return 0

    @property
    def is_moe(self) -> bool:
        return _is_moe(self)

    @property
    def expert_width(self) -> int:
        """One routed expert's MLP width."""
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def dense_width(self) -> int:
        """The MLP width of a layer without experts."""
        return (self.intermediate_size_mlp if self.model_type == "llama4_text" else None) or self.intermediate_size

    @property
    def shared_experts(self) -> int:
        """Shared-expert MLPs every token of an MoE layer passes through (0 or 1; deepseek fuses its
        `n_shared_experts` into one MLP `shared_expert_width` wide)."""
        return 1 if self.shared_expert_width else 0

    @property
    def shared_expert_width(self) -> int:
        """Width of the MoE layer's shared-expert MLP; 0 when there is none."""
        if self.model_type == "llama4_text":
            return self.intermediate_size
        if self.model_type == "qwen2_moe":
            return self.shared_expert_intermediate_size or 0
        if self.model_type in MLA_MODEL_TYPES:
            return (self.n_shared_experts or 0) * self.expert_width
        return 0

    def moe_layer_indices(self) -> set[int]:
        """Layers whose MLP is routed experts, by each family's rule in transformers' modeling code."""
        n = self.num_hidden_layers
        if self.routed_experts == 0:
            return set()
        if self.model_type in ("mixtral", "gpt_oss"):
            return set(range(n))
        if self.model_type in MLA_MODEL_TYPES:
            return set(range(self.first_k_dense_replace or 0, n))
        if self.model_type in ("qwen2_moe", "qwen3_moe"):
            step, dense = self.decoder_sparse_step or 1, set(self.mlp_only_layers or ())
            return {i for i in range(n) if i not in dense and (i + 1) % step == 0}
        if self.moe_layers is not None:
            return set(self.moe_layers)
        step = self.interleave_moe_layer_step or 1
        return set(range(step - 1, n, step))

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
        if self.model_type in ("gemma2", "gpt_oss"):
            return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
        if self.model_type == "gemma3_text":
            pattern = self.sliding_window_pattern or 6
            return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
        if self.model_type == "qwen2_moe":  # transformers 5.19 Qwen2MoeConfig: even layers below max_window_layers
            if not (self.use_sliding_window and self.sliding_window):
                return ["full_attention"] * n
            first = self.max_window_layers if self.max_window_layers is not None else 28
            return ["sliding_attention" if i % 2 == 0 and i < first else "full_attention" for i in range(n)]
        if self.model_type in ("qwen2", "qwen3", "qwen3_moe"):
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


Derived = TypeVar("Derived")
# Configs whose derived numbers `per_config` keeps: more than a registry holds (a few dozen), few enough to be small.
CONFIGS_REMEMBERED = 256


def per_config(derive: Callable[[TextConfig], Derived]) -> Callable[[TextConfig], Derived]:
    """`derive`, a pure function of a config, remembered per config object.

    A TextConfig is frozen, so what is derived from it stays true for the object's life, and the planner's
    searches ask for the same derived numbers thousands of times per command. Keyed by identity (a config with
    list fields does not hash): each entry holds its config, so no other object can take its id while the
    entry lives; an equal config (another load, a `model_copy`) is another object and derives afresh. At
    CONFIGS_REMEMBERED configs the memory starts over.
    """
    remembered: dict[int, tuple[TextConfig, Derived]] = {}

    def derived(cfg: TextConfig) -> Derived:
        hit = remembered.get(id(cfg))
        if hit is not None and hit[0] is cfg:
            return hit[1]
        value = derive(cfg)
        if len(remembered) >= CONFIGS_REMEMBERED:
            remembered.clear()
        remembered[id(cfg)] = (cfg, value)
        return value

    return functools.update_wrapper(derived, derive)


@per_config
def _is_moe(cfg: TextConfig) -> bool:
    return cfg.routed_experts > 0 and bool(cfg.moe_layer_indices())


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
        raise UserError(f"{origin}: {err}") from None


def load_hf_config(path: Path) -> TextConfig:
    """A user's config.json, read by `read_hf_config`, then bounded field by field."""
    return from_hf_dict(read_hf_config(path), str(path))


def read_hf_config(path: Path) -> dict[str, Any]:
    """A user's config.json as a dict: a regular file of at most MAX_CONFIG_BYTES (never a FIFO or /dev/zero,
    which would hang the read), JSON nested no deeper than Python's parser goes, an object at the top."""
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
    return raw


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
