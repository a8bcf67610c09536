"""GGUF files as llama.cpp's quantizer (`llama-quantize`) writes them: every tensor's name,
shape, ggml type and bytes, from the architecture alone.

Pure arithmetic, no llama.cpp import. The facts below are read from llama.cpp's own
source, the copy vendored by llama-cpp-python 0.3.36 (commit of 2026-10-01):

- block sizes and bytes per block: ggml/src/ggml.c `type_traits` (QK4_0 = QK8_0 = 32,
  QK_K = 256; block_q4_0 is 2 + 16 bytes, block_q8_0 2 + 32, block_q4_K 2+2+12+128 = 144,
  block_q5_K 2+2+12+32+128 = 176, block_q6_K 128+64+16+2 = 210, ...);
- which tensors are quantized at all: src/llama-quant.cpp `tensor_allows_quantization`
  (2-D and 3-D tensors whose name ends in "weight", never `*_norm.weight`, never the
  MoE router `ffn_gate_inp.weight`); the rest keep the type the converter gave them,
  which for norms, 1-D tensors, biases and routers is F32 (conversion/base.py);
- the per-tensor type of the `_M`/`_S` mixes: src/llama-quant.cpp
  `llama_tensor_get_type_impl` (output / tied token_embd to Q6_K, attn_v and ffn_down
  on "use_more_bits" layers to Q6_K for Q4_K_M and Q5_K_M, the first attn_v and first
  eighth of ffn_down to Q5_K for Q4_K_S, 8-expert models' attn_k/attn_v at Q8_0 and
  attn_output at Q5_K, the 70B attn_v bump);
- the fallback when a row is not a whole number of blocks: `tensor_type_fallback`
  (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16);
- MXFP4_MOE (llama_ftype 38, the file type of published gpt-oss GGUFs): every quantizable
  tensor with more than one slice along ne[2] (the 3-D experts `ffn_*_exps`) is MXFP4, every
  other one Q8_0, the output and a tied token embedding Q8_0 too, a row that is not whole
  32-blocks F16 (`llama_tensor_get_type_impl`; the wheel ships no .cpp, so this is read in
  ggml-org/llama.cpp and held to the vendored quantizer by tests/test_gguf_sizes.py);
  block_mxfp4 is one E8M0 exponent byte and 16 bytes of 4-bit E2M1 codes per 32 weights
  (ggml/src/ggml-common.h, QK_MXFP4 = 32);
- tensors are visited in the loader's order (src/llama-model-loader.h
  `weight_name_comparer`: by block number, then by name), so the quantizer's attn_v and
  ffn_down counters are the layer index.

Every tensor's data starts at a multiple of the file's alignment (32 bytes,
GGUF_DEFAULT_ALIGNMENT); `tensor_data_bytes` includes that padding. The file adds a
header (metadata and the vocabulary) of a few MB, which is not counted here.

Imatrix-only choices (Q4_0/Q5_0 ffn_down bumped to Q4_1/Q5_1 in the first eighth of
layers when an importance matrix is given) are modelled with `imatrix=True`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import prod

from bench.config.hfconfig import TextConfig, per_config

GGUF_ALIGNMENT = 32


@dataclass(frozen=True)
class GgmlType:
    name: str
    block_size: int  # weights per block
    type_size: int  # bytes per block

    def row_bytes(self, n: int) -> int:
        assert n % self.block_size == 0, (self.name, n)
        return n // self.block_size * self.type_size


GGML_TYPES: dict[str, GgmlType] = {t.name: t for t in (
    GgmlType("F32", 1, 4),
    GgmlType("F16", 1, 2),
    GgmlType("BF16", 1, 2),
    GgmlType("Q4_0", 32, 18),  # fp16 scale + 16 bytes of nibbles
    GgmlType("Q4_1", 32, 20),  # fp16 scale and min + 16 bytes
    GgmlType("Q5_0", 32, 22),  # fp16 scale + 4 bytes of high bits + 16 bytes
    GgmlType("Q5_1", 32, 24),
    GgmlType("Q8_0", 32, 34),  # fp16 scale + 32 int8
    GgmlType("Q2_K", 256, 84),
    GgmlType("Q3_K", 256, 110),
    GgmlType("Q4_K", 256, 144),
    GgmlType("Q5_K", 256, 176),
    GgmlType("Q6_K", 256, 210),
    GgmlType("MXFP4", 32, 17),  # E8M0 shared exponent + 16 bytes of E2M1 nibbles
)}

# bench quant id -> (llama_ftype name, its default ggml type: llama_ftype_get_default_type)
GGUF_FTYPES: dict[str, tuple[str, str]] = {
    "f16": ("MOSTLY_F16", "F16"),
    "bf16": ("MOSTLY_BF16", "BF16"),
    "q8_0": ("MOSTLY_Q8_0", "Q8_0"),
    "q6_k": ("MOSTLY_Q6_K", "Q6_K"),
    "q5_k_m": ("MOSTLY_Q5_K_M", "Q5_K"),
    "q5_k_s": ("MOSTLY_Q5_K_S", "Q5_K"),
    "q4_k_m": ("MOSTLY_Q4_K_M", "Q4_K"),
    "q4_k_s": ("MOSTLY_Q4_K_S", "Q4_K"),
    "q4_0": ("MOSTLY_Q4_0", "Q4_0"),
    "mxfp4_moe": ("MOSTLY_MXFP4_MOE", "MXFP4"),
}
MXFP4_MOE = "mxfp4_moe"
# The types the planner weighs for every architecture llama.cpp loads. MXFP4_MOE is not among them: it is the
# type gpt-oss is published in (its experts trained in MXFP4), and no published file of the other families
# bench plans uses it, so it is weighed for the families of MXFP4_MOE_MODEL_TYPES only (`planned_gguf_quants`).
GGUF_QUANTS: tuple[str, ...] = tuple(q for q in GGUF_FTYPES if q != MXFP4_MOE)
MXFP4_MOE_MODEL_TYPES = frozenset({"gpt_oss"})
# bench's model types that llama.cpp loads and whose GGUF files the planner lays out (llama and mistral convert to
# llama.cpp's `llama` architecture, ministral3 to `mistral3`, llama4_text to `llama4`, gemma3_text to `gemma3`,
# qwen3_moe to `qwen3moe`, deepseek_v2/v3 to `deepseek2`). Not gpt_oss, which is planned at MXFP4_MOE alone
# (`planned_gguf_quants`): its published GGUFs keep the experts in MXFP4, as the converter writes them from the
# original checkpoint, and llama.cpp's quantizer refuses to requantize them to a K-quant unless asked to
# (`allow_requantize`), so a Q4_K_M plan would describe a file nobody publishes. phi3, olmo2 and granite keep their
# names; qwen2_moe converts to `qwen2moe`.
LLAMA_CPP_MODEL_TYPES = frozenset({"llama", "mistral", "ministral3", "mixtral", "qwen2", "gemma", "gemma2",
                                   "llama4_text", "qwen3", "qwen3_moe", "gemma3_text", "deepseek_v2",
                                   "deepseek_v3", "phi3", "olmo2", "granite", "qwen2_moe"})
# Families with a per-head RMSNorm on q and k, and those with norms after attention and after the MLP.
QK_NORM_MODEL_TYPES = ("qwen3", "qwen3_moe", "gemma3_text")
POST_NORM_MODEL_TYPES = ("gemma2", "gemma3_text", "olmo2")
# OLMo 2 normalises q and k over the whole projection (one weight per channel of q and of k, not per head), and
# its only norms in a layer are the two post-norms: no attn_norm, no ffn_norm.
POST_NORM_ONLY_MODEL_TYPES = ("olmo2",)
# Phi-3 keeps its fused projections: one attn_qkv (q, then k, then v) and one ffn_up holding gate and up.
FUSED_PROJECTION_MODEL_TYPES = ("phi3",)


def planned_gguf_quants(model_type: str) -> tuple[str, ...]:
    """The GGUF types a plan weighs for a family: the general ones where llama.cpp loads it, MXFP4_MOE alone for
    gpt-oss (its published type), none where bench lays out no GGUF."""
    if model_type in MXFP4_MOE_MODEL_TYPES:
        return (MXFP4_MOE,)
    return GGUF_QUANTS if model_type in LLAMA_CPP_MODEL_TYPES else ()


@dataclass(frozen=True)
class GgufTensor:
    name: str
    shape: tuple[int, ...]  # ggml order: ne[0] is the row (input) dimension
    ggml_type: str

    @property
    def nbytes(self) -> int:
        t = GGML_TYPES[self.ggml_type]
        return t.row_bytes(self.shape[0]) * prod(self.shape[1:])


def source_tensors(cfg: TextConfig, rope_freqs: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """The tensors convert_hf_to_gguf.py writes for the text model, in the loader's order
    (non-block tensors first, then block by block, names sorted within a block).

    Per family, as llama.cpp's loader asks for them (src/llama-model.cpp, `load_tensors`):
    qwen3 and qwen3moe add a per-head RMSNorm on q and k (`attn_q_norm`, `attn_k_norm`, head_dim
    floats); gemma3 has those and, like gemma2, a norm after attention and after the MLP
    (`post_attention_norm`, `post_ffw_norm`), and ties its embeddings; qwen3moe's MoE layers
    hold a router and 3-D expert tensors of `moe_intermediate_size`, with no shared expert.
    gpt-oss (llama.cpp's `gpt-oss`, LLM_ARCH_OPENAI_MOE) normalises the MLP input with
    `post_attention_norm` instead of an `ffn_norm`, has biases on q/k/v/o, one attention-sink
    logit per head (`attn_sinks.weight`, 1-D), a biased router and biased experts (the expert
    biases are 2-D, one row per expert, and never quantized: their names end in "bias").
    deepseek2 (DeepSeek V2/V3, multi-head latent attention) replaces q/k/v with a low-rank q
    (`attn_q_a`, `attn_q_a_norm`, `attn_q_b`; a full `attn_q` without q_lora_rank), the shared
    latent and RoPE key (`attn_kv_a_mqa`, `attn_kv_a_norm`) and the per-head up-projections the
    converter splits out of kv_b (`attn_k_b`, `attn_v_b`, 3-D); its first layers are dense, the
    others routed experts plus one shared MLP of n_shared_experts experts' width, and V3's router
    carries a score-correction bias (`exp_probs_b.bias`).
    phi3 keeps HF's fused projections: `attn_qkv` (q, k, v rows) and an `ffn_up` of twice the MLP width
    (gate and up), no `ffn_gate`. olmo2 has no norm before attention or the MLP, only the two post-norms, and
    its q/k norms span the whole projection (q and k widths, not head_dim). granite is llama's layout (its
    multipliers are metadata). qwen2moe has q/k/v biases, routed experts and a shared expert with a sigmoid
    gate of one weight per hidden unit (`ffn_gate_inp_shexp`, 1-D, F32 as the converter writes it).
    """
    h, hd = cfg.hidden_size, cfg.head_size
    q, kv = cfg.num_attention_heads * hd, cfg.kv_heads * hd
    top: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (h, cfg.vocab_size)),
                                              ("output_norm.weight", (h,))]
    if not cfg.tie_word_embeddings:
        top.append(("output.weight", (h, cfg.vocab_size)))
    if rope_freqs:  # llama3-style rope scaling stores its factors (head_dim / 2 floats)
        top.append(("rope_freqs.weight", (hd // 2,)))
    out = sorted(top)
    moe_layers = cfg.moe_layer_indices()
    post_norm_only = cfg.model_type in POST_NORM_ONLY_MODEL_TYPES
    fused = cfg.model_type in FUSED_PROJECTION_MODEL_TYPES
    qkv_bias_only = cfg.model_type == "qwen2" or (cfg.model_type == "qwen2_moe" and cfg.qkv_bias is not False)
    for i in range(cfg.num_hidden_layers):
        blk: list[tuple[str, tuple[int, ...]]] = [] if post_norm_only else [("attn_norm.weight", (h,))]
        if fused:
            blk += [("attn_qkv.weight", (h, q + 2 * kv)), ("attn_output.weight", (q, h))]
        else:
            blk += _mla_attention(cfg) if cfg.is_mla else [
                ("attn_q.weight", (h, q)), ("attn_k.weight", (h, kv)), ("attn_v.weight", (h, kv)),
                ("attn_output.weight", (q, h))]
        if cfg.model_type == "gpt_oss":
            blk += [("post_attention_norm.weight", (h,)), ("attn_sinks.weight", (cfg.num_attention_heads,))]
        elif not post_norm_only:
            blk.append(("ffn_norm.weight", (h,)))
        if cfg.model_type in QK_NORM_MODEL_TYPES:
            blk += [("attn_q_norm.weight", (hd,)), ("attn_k_norm.weight", (hd,))]
        if post_norm_only:
            blk += [("attn_q_norm.weight", (q,)), ("attn_k_norm.weight", (kv,))]
        if cfg.model_type in POST_NORM_MODEL_TYPES:
            blk += [("post_attention_norm.weight", (h,)), ("post_ffw_norm.weight", (h,))]
        if qkv_bias_only or cfg.attention_bias:
            blk += [("attn_q.bias", (q,)), ("attn_k.bias", (kv,)), ("attn_v.bias", (kv,))]
            if not qkv_bias_only:
                blk.append(("attn_output.bias", (h,)))
        if i in moe_layers:
            n, ff = cfg.routed_experts, cfg.expert_width
            blk += [("ffn_gate_inp.weight", (h, n)), ("ffn_gate_exps.weight", (h, ff, n)),
                    ("ffn_up_exps.weight", (h, ff, n)), ("ffn_down_exps.weight", (ff, h, n))]
            if cfg.model_type == "deepseek_v3":
                blk.append(("exp_probs_b.bias", (n,)))
            if cfg.model_type == "gpt_oss":
                blk += [("ffn_gate_inp.bias", (n,)), ("ffn_gate_exps.bias", (ff, n)), ("ffn_up_exps.bias", (ff, n)),
                        ("ffn_down_exps.bias", (h, n))]
            if cfg.shared_expert_width:
                sff = cfg.shared_expert_width
                blk += [("ffn_gate_shexp.weight", (h, sff)), ("ffn_up_shexp.weight", (h, sff)),
                        ("ffn_down_shexp.weight", (sff, h))]
            if cfg.model_type == "qwen2_moe":  # the shared expert's sigmoid gate: one weight per hidden unit
                blk.append(("ffn_gate_inp_shexp.weight", (h,)))
        elif fused:
            ff = cfg.dense_width
            blk += [("ffn_up.weight", (h, 2 * ff)), ("ffn_down.weight", (ff, h))]
        else:
            ff = cfg.dense_width
            blk += [("ffn_gate.weight", (h, ff)), ("ffn_up.weight", (h, ff)), ("ffn_down.weight", (ff, h))]
            if cfg.mlp_bias:
                blk += [("ffn_gate.bias", (ff,)), ("ffn_up.bias", (ff,)), ("ffn_down.bias", (h,))]
        out += sorted((f"blk.{i}.{name}", shape) for name, shape in blk)
    return out


def _mla_attention(cfg: TextConfig) -> list[tuple[str, tuple[int, ...]]]:
    """deepseek2's attention tensors (src/llama-model.cpp, LLM_ARCH_DEEPSEEK2 with MLA): shapes in ggml order."""
    h, heads = cfg.hidden_size, cfg.num_attention_heads
    nope, rope, kv_rank = cfg.qk_nope_head_dim or 0, cfg.qk_rope_head_dim or 0, cfg.kv_lora_rank or 0
    v = cfg.value_head_size
    out: list[tuple[str, tuple[int, ...]]] = [
        ("attn_kv_a_norm.weight", (kv_rank,)), ("attn_kv_a_mqa.weight", (h, kv_rank + rope)),
        ("attn_k_b.weight", (nope, kv_rank, heads)), ("attn_v_b.weight", (kv_rank, v, heads)),
        ("attn_output.weight", (heads * v, h))]
    if cfg.q_lora_rank:
        out += [("attn_q_a_norm.weight", (cfg.q_lora_rank,)), ("attn_q_a.weight", (h, cfg.q_lora_rank)),
                ("attn_q_b.weight", (cfg.q_lora_rank, heads * (nope + rope)))]
    else:
        out.append(("attn_q.weight", (h, heads * (nope + rope))))
    return out


def source_type(name: str, shape: tuple[int, ...], quant: str) -> str:
    """The type convert_hf_to_gguf.py gives a tensor in the F16/BF16 file the quantizer reads."""
    if len(shape) <= 1 or name.endswith("_norm.weight") or "ffn_gate_inp" in name or not name.endswith(".weight"):
        return "F32"
    return "BF16" if quant == "bf16" else "F16"


def _allows_quantization(name: str, shape: tuple[int, ...]) -> bool:
    return (len(shape) >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and "ffn_gate_inp.weight" not in name)


def _is_attn_v(name: str) -> bool:
    return "attn_v.weight" in name or "attn_qkv.weight" in name


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fallback(t: str, ncols: int) -> str:
    """Row length not a whole number of blocks: the quantizer's fallback type, then F16."""
    if ncols % GGML_TYPES[t].block_size == 0:
        return t
    t2 = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}.get(t, t)
    return t2 if ncols % GGML_TYPES[t2].block_size == 0 else "F16"


def _mxfp4_moe_type(name: str, shape: tuple[int, ...], tied: bool) -> str:
    """A quantizable tensor's type in an MXFP4_MOE file: the output (or the tied embedding) Q8_0, a tensor of
    several slices along ne[2] (the experts) MXFP4, every other one Q8_0."""
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        return _fallback("Q8_0", shape[0])
    return _fallback("MXFP4" if len(shape) > 2 and shape[2] > 1 else "Q8_0", shape[0])


def _is_70b(cfg: TextConfig) -> bool:
    """llama.cpp's LLM_TYPE_70B: 80 layers with grouped KV heads (llama), or 80 layers (qwen2)."""
    if cfg.num_hidden_layers != 80:
        return False
    return cfg.model_type == "qwen2" or (cfg.model_type in ("llama", "mistral")
                                         and cfg.kv_heads != cfg.num_attention_heads)


def _attn_v_type(t: str, ftype: str, i_attn_v: int, n_attn_v: int, is_70b: bool, n_expert: int) -> str:
    """llama.cpp's type for the `i_attn_v`-th of `n_attn_v` attn_v tensors (a fused attn_qkv counts as one)."""
    if ftype in ("MOSTLY_Q4_K_M", "MOSTLY_Q5_K_M") and _use_more_bits(i_attn_v, n_attn_v):
        t = "Q6_K"
    elif ftype == "MOSTLY_Q4_K_S" and i_attn_v < 4:
        t = "Q5_K"
    if is_70b and t in ("Q3_K", "Q4_K"):
        t = "Q5_K"
    return "Q8_0" if n_expert == 8 else t


def _ffn_down_type(t: str, ftype: str, i_layer: int, n_layer: int, imatrix: bool) -> str:
    """llama.cpp's type for the ffn_down tensor of layer `i_layer`: MoE models take the layer from the name,
    dense ones count ffn_down tensors (the same number)."""
    if ftype in ("MOSTLY_Q4_K_M", "MOSTLY_Q5_K_M") and _use_more_bits(i_layer, n_layer):
        return "Q6_K"
    if ftype == "MOSTLY_Q4_K_S" and i_layer < n_layer // 8:
        return "Q5_K"
    if ftype == "MOSTLY_Q4_0" and imatrix and i_layer < n_layer // 8:
        return "Q4_1"
    return t


def gguf_tensors(cfg: TextConfig, quant: str, rope_freqs: bool = False, imatrix: bool = False) -> list[GgufTensor]:
    """Every tensor of the GGUF file `llama-quantize` writes for `quant` from an F16/BF16 GGUF."""
    ftype, default = GGUF_FTYPES[quant]
    tensors = source_tensors(cfg, rope_freqs)
    n_layer = cfg.num_hidden_layers
    n_expert = cfg.routed_experts if cfg.is_moe else 0
    tied = not any(name == "output.weight" for name, _ in tensors)
    # The quantizer counts a fused attn_qkv (phi3) as an attn_v (llama-quant.cpp, category_is_attn_v).
    n_attn_v = sum(1 for name, _ in tensors if _is_attn_v(name))
    i_attn_v = i_ffn_down = 0
    out: list[GgufTensor] = []
    for name, shape in tensors:
        src = source_type(name, shape, quant)
        if not _allows_quantization(name, shape):
            out.append(GgufTensor(name, shape, src))
            continue
        t = default
        if default in ("F16", "BF16"):  # not a quantized type: every allowed tensor takes it as is
            out.append(GgufTensor(name, shape, t))
            continue
        if ftype == "MOSTLY_MXFP4_MOE":  # no per-layer rule: the counters below never move
            out.append(GgufTensor(name, shape, _mxfp4_moe_type(name, shape, tied)))
            continue
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            if shape[0] % GGML_TYPES[t].block_size != 0:
                t = "Q8_0"
            elif t != "Q8_0":
                t = "Q6_K"
        elif _is_attn_v(name):
            t = _attn_v_type(t, ftype, i_attn_v, n_attn_v, _is_70b(cfg), n_expert)
            i_attn_v += 1
        elif "attn_k.weight" in name:
            if n_expert == 8:
                t = "Q8_0"
        elif "ffn_down" in name:
            t = _ffn_down_type(t, ftype, layer if n_expert > 1 else i_ffn_down, n_layer, imatrix)
            i_ffn_down += 1
        elif "attn_output.weight" in name:
            if n_expert == 8 and ftype in ("MOSTLY_Q4_K_S", "MOSTLY_Q4_K_M"):
                t = "Q5_K"
        out.append(GgufTensor(name, shape, _fallback(t, shape[0])))
    return out


def _padded(n: int) -> int:
    return -(-n // GGUF_ALIGNMENT) * GGUF_ALIGNMENT


def tensor_data_bytes(tensors: Sequence[GgufTensor]) -> int:
    """The file's tensor data section: every tensor's bytes, each padded to the alignment."""
    return sum(_padded(t.nbytes) for t in tensors)


# A plan asks for the same file at every context its search tries, for every type its advice weighs,
# and again for every claim on the same model: each file's layout is remembered per architecture (its
# JSON, since a config with list fields does not hash), its tensors' sizes per type, and the sums over them.
CACHED_FILES = 512


@per_config
def _config_key(cfg: TextConfig) -> str:
    """The architecture as JSON, what the caches below are keyed by, made once per config object."""
    return cfg.model_dump_json()


def gguf_weight_bytes(cfg: TextConfig, quant: str, rope_freqs: bool = False, imatrix: bool = False) -> int:
    return _weight_bytes(_config_key(cfg), quant, rope_freqs, imatrix)


def gguf_read_bytes_per_token(cfg: TextConfig, quant: str, expert_share: float | None = None) -> float:
    """Weight bytes one decode step reads: every tensor, routed experts at `expert_share` of
    them (k of n at batch 1), and one row of the token embedding (a lookup) unless it is tied."""
    if expert_share is None:
        expert_share = (cfg.num_experts_per_tok or 1) / (cfg.routed_experts or 1)
    return _read_bytes_per_token(_config_key(cfg), quant, expert_share)


@lru_cache(maxsize=CACHED_FILES)
def _weight_bytes(cfg_json: str, quant: str, rope_freqs: bool, imatrix: bool) -> int:
    return sum(_padded(size) * n for size, n in Counter(_sizes(cfg_json, quant, rope_freqs, imatrix)).items())


@lru_cache(maxsize=CACHED_FILES)
def _read_bytes_per_token(cfg_json: str, quant: str, expert_share: float) -> float:
    layout = _layout(cfg_json, False)
    cfg = layout.cfg
    read = 0.0
    for name, size in zip(layout.names, _sizes(cfg_json, quant, False, False)):
        if "_exps." in name:
            read += size * expert_share
        elif name == "token_embd.weight" and not cfg.tie_word_embeddings:
            read += size / cfg.vocab_size
        else:
            read += size
    return read


def gguf_tensor_sizes(cfg: TextConfig, quant: str, rope_freqs: bool = False, imatrix: bool = False
                      ) -> list[tuple[str, int]]:
    """Each tensor's name and bytes, exactly as `gguf_tensors` lays the file out and in its order, for a fraction
    of its cost: a plan weighs every GGUF type of every model (`bench plan --claims`: 48 files, 26,000 tensors),
    and a file is mostly the same tensors layer after layer. The rules are `gguf_tensors`' own, applied once per
    name within a block and shape, except for attn_v and ffn_down, whose type moves with the layer.
    tests/test_plan_search.py holds the two equal for every registry model and GGUF type."""
    cfg_json = _config_key(cfg)
    return list(zip(_layout(cfg_json, rope_freqs).names, _sizes(cfg_json, quant, rope_freqs, imatrix)))


# How the quantizer picks a tensor's type: kept as converted (norms, biases, routers), once for every layer, or
# per layer (attn_v and ffn_down, by their counters).
KEPT, FIXED, ATTN_V, FFN_DOWN = range(4)
Key = tuple[str, tuple[int, ...]]  # a tensor's name within its block (the whole name outside blocks), its shape


@dataclass(frozen=True)
class _Layout:
    """What of a file no type changes, worked out once for all of them."""

    cfg: TextConfig
    names: tuple[str, ...]  # every tensor, in the file's order
    keys: tuple[Key, ...]  # the same, by name within the block and shape
    distinct: tuple[tuple[Key, int], ...]  # each key once, with its kind
    moving: tuple[tuple[int, Key, int, int], ...]  # position, key, layer and kind of every ATTN_V and FFN_DOWN tensor
    tied: bool  # no output.weight: the token embedding is the output matrix


@lru_cache(maxsize=CACHED_FILES)
def _layout(cfg_json: str, rope_freqs: bool) -> _Layout:
    """`source_tensors` sorted by how the quantizer picks each one's type."""
    cfg = TextConfig.model_validate(json.loads(cfg_json))
    names, keys, kinds, moving = [], [], {}, []
    for name, shape in source_tensors(cfg, rope_freqs):
        parts = name.split(".", 2)
        layer, key = (int(parts[1]), (parts[2], shape)) if parts[0] == "blk" else (-1, (name, shape))
        kind = KEPT
        if _allows_quantization(name, shape):
            kind = ATTN_V if _is_attn_v(name) else FFN_DOWN if "ffn_down" in name else FIXED
        if kind in (ATTN_V, FFN_DOWN):
            moving.append((len(names), key, layer, kind))
        names.append(name)
        keys.append(key)
        kinds.setdefault(key, kind)
    return _Layout(cfg, tuple(names), tuple(keys), tuple(kinds.items()), tuple(moving),
                   "output.weight" not in names)


@lru_cache(maxsize=CACHED_FILES)
def _sizes(cfg_json: str, quant: str, rope_freqs: bool, imatrix: bool) -> tuple[int, ...]:
    """Every tensor's bytes, in the order of `_layout(...).names`."""
    layout = _layout(cfg_json, rope_freqs)
    cfg = layout.cfg
    ftype, default = GGUF_FTYPES[quant]
    n_expert = cfg.routed_experts if cfg.is_moe else 0
    quantized = default not in ("F16", "BF16")
    mxfp4_moe = ftype == "MOSTLY_MXFP4_MOE"
    per_layer = quantized and not mxfp4_moe  # types that move with the layer
    by_key: dict[Key, int] = {}
    for key, kind in layout.distinct:
        name, shape = key
        if per_layer and kind in (ATTN_V, FFN_DOWN):
            continue  # its type moves with the layer: `_moving_sizes`
        if kind == KEPT:
            t = source_type(name, shape, quant)
        elif not quantized:
            t = default
        elif mxfp4_moe:
            t = _mxfp4_moe_type(name, shape, layout.tied)
        elif name == "output.weight" or (layout.tied and name == "token_embd.weight"):
            t = "Q8_0" if shape[0] % GGML_TYPES[default].block_size != 0 or default == "Q8_0" else "Q6_K"
        elif "attn_k.weight" in name and n_expert == 8:
            t = "Q8_0"
        elif "attn_output.weight" in name and n_expert == 8 and ftype in ("MOSTLY_Q4_K_S", "MOSTLY_Q4_K_M"):
            t = "Q5_K"
        else:
            t = default
        if per_layer and kind == FIXED:
            t = _fallback(t, shape[0])
        by_key[key] = GgufTensor(name, shape, t).nbytes
    sizes = [by_key.get(key, 0) for key in layout.keys]  # 0: a moving tensor, set below
    if per_layer:
        for position, size in _moving_sizes(layout, ftype, default, n_expert, imatrix):
            sizes[position] = size
    return tuple(sizes)


def _moving_sizes(layout: _Layout, ftype: str, default: str, n_expert: int, imatrix: bool
                  ) -> list[tuple[int, int]]:
    """The attn_v and ffn_down tensors of a quantized type, by `gguf_tensors`' per-layer rules and counters."""
    n_layer, n_attn_v = layout.cfg.num_hidden_layers, sum(1 for *_, kind in layout.moving if kind == ATTN_V)
    i_attn_v = i_ffn_down = 0
    known: dict[tuple[tuple[int, ...], str], int] = {}  # bytes by shape and type
    out = []
    for position, (name, shape), layer, kind in layout.moving:
        t = default
        if kind == ATTN_V:
            t = _attn_v_type(t, ftype, i_attn_v, n_attn_v, _is_70b(layout.cfg), n_expert)
            i_attn_v += 1
        else:
            t = _ffn_down_type(t, ftype, layer if n_expert > 1 else i_ffn_down, n_layer, imatrix)
            i_ffn_down += 1
        t = _fallback(t, shape[0])
        size = known.get((shape, t))
        if size is None:
            size = known[shape, t] = GgufTensor(name, shape, t).nbytes
        out.append((position, size))
    return out


def type_counts(tensors: list[GgufTensor]) -> dict[str, int]:
    """How many tensors of each ggml type (llama-quantize prints the same summary)."""
    counts: dict[str, int] = {}
    for t in tensors:
        counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
    return counts
