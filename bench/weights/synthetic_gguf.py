"""Write a GGUF file of a registry architecture with random weights, in any llama.cpp format.

How: the tensors are declared in their real names and shapes (what llama.cpp's own
converter writes for the family) in a 16-bit file whose large tensors are holes of a
sparse file, so a 24B shape's 47 GB intermediate costs no disk and no write time. That
file goes through llama.cpp's own quantizer (`llama_model_quantize`), which picks every
tensor's type exactly as it does for a published file (the `_M` mixes, the output and
embedding types, the fall-backs for rows that do not divide into 256) and lays the
blocks out. Quantizing zeros gives zero blocks; the last step fills every block with
random bits and a small finite scale, in place, so the weights are random and llama.cpp
computes on them like on real ones. Norm weights are ones.

Why not write random blocks directly: the per-tensor type choices would then be a copy of
llama.cpp's rules, one more thing to keep in step with it; the quantizer is the rule.

Architectures (Hugging Face model_type -> GGUF architecture): llama, mistral -> llama;
mixtral -> llama with experts; ministral3 -> mistral3; llama4_text -> llama4 (llama.cpp
fixes Llama 4's attention chunk at 8192 whatever the config says); qwen3 -> qwen3;
qwen3_moe -> qwen3moe (one expert's width under `expert_feed_forward_length`); gemma3_text ->
gemma3 (the window under `attention.sliding_window`: llama.cpp reads it and makes every sixth
layer global itself; no final-logit softcap key, which Gemma 3 does not have); gpt_oss -> gpt-oss
(window and expert width keys; every other layer slides); deepseek_v2/v3 -> deepseek2 (the latent
cache as the converter declares it: one KV head of kv_lora_rank + rope, the heads' sizes under the
`*_mla` keys, the ranks, the dense lead and shared-expert count); phi3 -> phi3 (the window key it reads and
then ignores, no long/short RoPE factors for a 4k model, and "<|endoftext|>" in the vocabulary); olmo2 -> olmo2;
granite -> granite (its four scalars); qwen2_moe -> qwen2moe (the routed and the shared expert's widths under
their own keys). Which keys each architecture requires
is llama.cpp's `load_hparams` (src/llama-model.cpp); a missing one fails the load. The vocabulary is
synthetic (SentencePiece-style: unk, bos, eos, 256 byte tokens, then distinct filler
tokens) of the real size. Only the final file lands in the cache, renamed into place.

Heavy imports (numpy, gguf, llama_cpp) happen inside the functions.
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config.hfconfig import TextConfig
from bench.config.specs import ModelSpec
from bench.errors import UserError
from bench.estimate.gguf import GGUF_FTYPES, source_tensors, source_type

# general.file_type values -> bench's name for them (the GGUF quants bench writes, plus what other files say).
FILE_TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k",
                   11: "q3_k_s", 12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s",
                   17: "q5_k_m", 18: "q6_k", 32: "bf16", 38: "mxfp4_moe"}
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "ministral3": "mistral3",
             "llama4_text": "llama4", "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "gemma3_text": "gemma3",
             "gpt_oss": "gpt-oss", "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "phi3": "phi3",
             "olmo2": "olmo2", "granite": "granite", "qwen2_moe": "qwen2moe"}
# RoPE bases of the families (config.json's rope_theta; the registry does not carry it, and it
# changes no size and no speed).
# Gemma 3's is its global layers' base; llama.cpp fixes its sliding layers' at 10,000 (src/llama-model.cpp,
# LLM_ARCH_GEMMA3: rope_freq_base_train_swa). Qwen3: Qwen/Qwen3-8B config.json rope_theta 1e6; Gemma 3:
# transformers' Gemma3TextConfig rope_theta 1e6, rope_local_base_freq 1e4; gpt-oss: openai/gpt-oss-20b
# config.json rope_theta 150000. Phi-3, OLMo 2, Granite 3.3 and Qwen1.5-MoE: their config.json files in
# tests/configs (rope_theta 10000, 500000, 10000000 and 1000000).
ROPE_BASE = {"llama": 500000.0, "mistral": 1000000.0, "mixtral": 1000000.0, "ministral3": 1000000.0,
             "llama4_text": 500000.0, "qwen3": 1000000.0, "qwen3_moe": 1000000.0, "gemma3_text": 1000000.0,
             "gpt_oss": 150000.0, "deepseek_v2": 10000.0, "deepseek_v3": 10000.0, "phi3": 10000.0,
             "olmo2": 500000.0, "granite": 10000000.0, "qwen2_moe": 1000000.0}
# Granite's four scalars (llama.cpp requires each key: src/llama-model.cpp, LLM_ARCH_GRANITE): the embedding,
# the residual branches and the attention scores are multiplied by them, the logits divided by the last. They
# change no size; these are ibm-granite/granite-3.3-8b-instruct's (tests/configs/granite-3.3-8b-instruct.json:
# embedding_multiplier, residual_multiplier, attention_multiplier, logits_scaling), which TextConfig does not keep.
GRANITE_SCALES = {"embedding": 12.0, "residual": 0.22, "attention": 0.0078125, "logit": 16.0}
RMS_EPS = 1e-5
N_BYTE_TOKENS = 256


def _f16(value: float) -> bytes:
    return struct.pack("<e", value)


# Bytes per block and the offsets and bytes of each block's scales, per ggml type (ggml-common.h): f16 scales, and
# MXFP4's one E8M0 exponent byte e, which scales ggml's doubled E2M1 codes (up to 12) by 2^(e-128): 120 puts the
# largest weight at 0.047. Random bits everywhere else are valid quants; the scales get a small finite value so a
# weight comes out around +-0.05, like a trained one.
_BLOCKS: dict[str, tuple[int, tuple[tuple[int, bytes], ...]]] = {
    "Q4_0": (18, ((0, _f16(5e-3)),)),
    "Q4_1": (20, ((0, _f16(5e-3)), (2, _f16(1e-3)))),
    "Q5_0": (22, ((0, _f16(2.5e-3)),)),
    "Q5_1": (24, ((0, _f16(2.5e-3)), (2, _f16(1e-3)))),
    "Q8_0": (34, ((0, _f16(3e-4)),)),
    "Q2_K": (84, ((80, _f16(3e-3)), (82, _f16(1e-3)))),
    "Q3_K": (110, ((108, _f16(1e-3)),)),
    "Q4_K": (144, ((0, _f16(5e-5)), (2, _f16(5e-5)))),
    "Q5_K": (176, ((0, _f16(2.5e-5)), (2, _f16(2.5e-5)))),
    "Q6_K": (210, ((208, _f16(1e-5)),)),
    "MXFP4": (17, ((0, bytes([120])),)),
}
_CHUNK = 1 << 24  # bytes of random bits drawn at a time


@dataclass(frozen=True)
class TensorDecl:
    name: str
    shape: tuple[int, ...]  # numpy order: rows last-but-one, the contiguous dimension last
    keep_f32: bool  # norms and the expert router stay f32 (llama.cpp never quantizes them)


def gguf_architecture(cfg: TextConfig) -> str:
    try:
        return GGUF_ARCH[cfg.model_type]
    except KeyError:
        supported = ", ".join(GGUF_ARCH)
        raise UserError(f"no synthetic GGUF for model_type {cfg.model_type}: bench writes {supported}") from None


def tensors(cfg: TextConfig) -> list[TensorDecl]:
    """Every tensor llama.cpp loads for this architecture, in the converter's names, order and shapes
    (the planner's list, `bench.estimate.gguf.source_tensors`, in numpy's order of dimensions)."""
    return [TensorDecl(name, tuple(reversed(shape)), source_type(name, shape, "f16") == "F32")
            for name, shape in source_tensors(cfg)]


def _add_metadata(writer, cfg: TextConfig, arch: str, name: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(1 if cfg.is_mla else cfg.kv_heads)  # MLA: one latent "head" in the cache
    if cfg.is_mla:  # the cache holds the latent and the RoPE key; the heads' own sizes go under *_mla
        writer.add_key_length((cfg.kv_lora_rank or 0) + (cfg.qk_rope_head_dim or 0))
        writer.add_value_length(cfg.kv_lora_rank or 0)
        writer.add_key_length_mla(cfg.head_size)
        writer.add_value_length_mla(cfg.value_head_size)
        writer.add_rope_dimension_count(cfg.qk_rope_head_dim or 0)
        writer.add_kv_lora_rank(cfg.kv_lora_rank or 0)
        if cfg.q_lora_rank:
            writer.add_q_lora_rank(cfg.q_lora_rank)
        writer.add_leading_dense_block_count(cfg.first_k_dense_replace or 0)
    else:
        writer.add_key_length(cfg.head_size)
        writer.add_value_length(cfg.head_size)
        writer.add_rope_dimension_count(cfg.head_size)
    writer.add_rope_freq_base(ROPE_BASE[cfg.model_type])
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(cfg.vocab_size)
    if arch == "llama4":
        writer.add_feed_forward_length(cfg.intermediate_size_mlp or cfg.intermediate_size)
        writer.add_expert_feed_forward_length(cfg.intermediate_size)
        writer.add_interleave_moe_layer_step(cfg.interleave_moe_layer_step or 1)
    else:
        writer.add_feed_forward_length(cfg.intermediate_size)
    if cfg.is_moe:
        writer.add_expert_count(cfg.routed_experts)
        writer.add_expert_used_count(cfg.num_experts_per_tok)
        if arch in ("qwen3moe", "gpt-oss", "deepseek2", "qwen2moe"):  # one expert's width has its own key
            writer.add_expert_feed_forward_length(cfg.expert_width)
        if arch == "qwen2moe":  # and so has the shared expert's (without it llama.cpp takes feed_forward_length)
            writer.add_expert_shared_feed_forward_length(cfg.shared_expert_width)
        if cfg.is_mla:  # deepseek's shared MLP is n_shared_experts experts wide; V3 gates with a sigmoid
            writer.add_expert_shared_count(cfg.n_shared_experts or 0)
            writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if cfg.model_type == "deepseek_v3"
                                          else gguf.ExpertGatingFuncType.SOFTMAX)
        elif cfg.shared_experts:
            writer.add_expert_shared_count(cfg.shared_experts)
    if arch in ("gemma3", "gpt-oss"):
        # The sliding layers' window; llama.cpp picks which layers slide itself (set_swa_pattern: every layer
        # but each sixth for gemma3, every other for gpt-oss) and leaves Gemma's final-logit softcap off unless
        # the file names one (Gemma 3 has none).
        writer.add_sliding_window(cfg.sliding_window)
    if arch == "phi3" and cfg.sliding_window:  # read, then switched off by llama.cpp ("Phi SWA is currently disabled")
        writer.add_sliding_window(cfg.sliding_window)
    if arch == "granite":
        writer.add_embedding_scale(GRANITE_SCALES["embedding"])
        writer.add_residual_scale(GRANITE_SCALES["residual"])
        writer.add_attention_scale(GRANITE_SCALES["attention"])
        writer.add_logit_scale(GRANITE_SCALES["logit"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # The vocabulary: SentencePiece-style, distinct tokens, the real size.
    if cfg.vocab_size < 3 + N_BYTE_TOKENS + 1:
        raise UserError(f"a GGUF vocabulary needs at least {4 + N_BYTE_TOKENS} tokens, not {cfg.vocab_size}")
    # A model named Phi-3 must have "<|endoftext|>": llama.cpp's vocabulary loader sets its attributes by text
    # (src/llama-vocab.cpp, the "phi-3"/"phi3" name rule) and fails the load without it.
    control = ["<|endoftext|>"] if arch == "phi3" else []
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(N_BYTE_TOKENS)] + control
    tokens += [f"t{i}" for i in range(cfg.vocab_size - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * N_BYTE_TOKENS + [gguf.TokenType.CONTROL] * len(control)
    types += [gguf.TokenType.NORMAL] * (cfg.vocab_size - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(cfg.vocab_size)])
    writer.add_token_types([int(t) for t in types])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)


def write_f16_skeleton(cfg: TextConfig, path: Path, name: str) -> None:
    """A 16-bit GGUF of the architecture: metadata and tensor table real, 16-bit tensors holes
    (zeros) of a sparse file, f32 norms ones and the router small random values."""
    import gguf
    import numpy as np

    arch = gguf_architecture(cfg)
    writer = gguf.GGUFWriter(path, arch)
    _add_metadata(writer, cfg, arch, name)
    decls = tensors(cfg)
    for t in decls:
        dtype = np.float32 if t.keep_f32 else np.float16
        nbytes = int(np.prod(t.shape)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(t.name, t.shape, np.dtype(dtype), nbytes)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    fout = writer.fout[0]
    align = writer.data_alignment
    rng = np.random.default_rng(0)
    pos = fout.tell()
    pos += -pos % align
    for t in decls:
        count = int(np.prod(t.shape))
        if t.keep_f32:
            fout.seek(pos)
            values = np.ones(count, np.float32) if t.name.endswith("norm.weight") else \
                rng.normal(0, 0.02, count).astype(np.float32)
            fout.write(values.tobytes())
            pos += count * 4
        else:
            pos += count * 2  # a hole: reads as zeros, costs no disk
        pos += -pos % align
    fout.truncate(pos)
    writer.close()


def quantize(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's own quantizer, all cores; raises when it fails."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{GGUF_FTYPES[quant][0]}")
    params.nthread = os.cpu_count() or 1
    params.allow_requantize = True
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise RuntimeError(f"llama.cpp's quantizer failed on {source.name} ({quant}): status {status}")


def fill_random(path: Path, seed: int = 0) -> dict[str, int]:
    """Overwrite every tensor but the norms with random values valid for its type, in place.

    Returns how many tensors of each ggml type were filled; an unknown type is left as
    quantized (zeros) and counted under its name with a leading `unfilled:`.
    """
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(path)
    plan = [(t.name, t.tensor_type.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors]
    del reader
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    with open(path, "r+b") as f:
        for name, kind, offset, nbytes in plan:
            if name.endswith("norm.weight"):
                continue
            filled = _fill_tensor(f, kind, offset, nbytes, rng)
            key = kind if filled else f"unfilled:{kind}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _fill_tensor(f, kind: str, offset: int, nbytes: int, rng) -> bool:
    import numpy as np

    if kind in ("F32", "F16", "BF16"):
        f.seek(offset)
        itemsize = {"F32": 4, "F16": 2, "BF16": 2}[kind]
        step = _CHUNK // itemsize
        left = nbytes // itemsize
        while left:
            n = min(step, left)
            values = rng.normal(0, 0.02, n).astype(np.float32)
            if kind == "F16":
                f.write(values.astype(np.float16).tobytes())
            elif kind == "BF16":
                f.write((values.view(np.uint32) >> 16).astype(np.uint16).tobytes())
            else:
                f.write(values.tobytes())
            left -= n
        return True
    if kind not in _BLOCKS:
        return False
    size, scales = _BLOCKS[kind]
    per_chunk = max(1, _CHUNK // size)
    blocks = nbytes // size
    f.seek(offset)
    while blocks:
        n = min(per_chunk, blocks)
        chunk = np.frombuffer(rng.bytes(n * size), np.uint8).reshape(n, size).copy()
        for at, raw in scales:
            chunk[:, at:at + len(raw)] = np.frombuffer(raw, np.uint8)
        f.write(chunk.tobytes())
        blocks -= n
    return True


def cache_path(spec: ModelSpec, quant: str) -> Path:
    from bench.weights.synthetic_hf import architecture_key, cache_root

    return cache_root() / "gguf" / f"{spec.id}-{architecture_key(spec)}-{quant}.gguf"


def _checked_target(spec: ModelSpec, quant: str) -> Path:
    """Where the GGUF of `spec` in `quant` is cached; one line for a type or architecture llama.cpp lacks."""
    if quant not in GGUF_FTYPES:
        raise UserError(f"no GGUF type {quant!r}; choose {', '.join(GGUF_FTYPES)}")
    gguf_architecture(spec.architecture)
    return cache_path(spec, quant)


def build(spec: ModelSpec, quant: str, seed: int = 0) -> Path:
    """The cached GGUF of `spec`'s architecture in `quant`; written once, atomically."""
    target = _checked_target(spec, quant)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    skeleton = target.with_name(f"{target.name}.f16-{os.getpid()}")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        write_f16_skeleton(spec.architecture, skeleton, spec.display_name)
        quantize(skeleton, tmp, quant)
        fill_random(tmp, seed)
        os.replace(tmp, target)
    finally:
        for leftover in (skeleton, tmp):
            leftover.unlink(missing_ok=True)
    return target


def file_type(path: str | Path) -> str | None:
    """The GGUF's `general.file_type` as bench names it (q4_k_m, ...), or None when absent."""
    import gguf

    return reader_file_type(gguf.GGUFReader(path))


def reader_file_type(reader) -> str | None:
    """`file_type` of a header already read (a `gguf.GGUFReader`)."""
    import gguf

    field = reader.get_field(gguf.Keys.General.FILE_TYPE)
    if field is None:
        return None
    value = int(field.contents())
    return FILE_TYPE_NAMES.get(value, f"type-{value}")


def _remove_leftovers(target: Path) -> None:
    """Partial files of builds whose process is gone (killed at a timeout): up to the model's size."""
    import psutil

    for leftover in target.parent.glob(f"{target.name}.*-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            leftover.unlink(missing_ok=True)


def build_isolated_target(spec: dict, quant: str) -> dict:
    """Child-process entry point (`bench.launch.isolate`): build the GGUF of a registry spec, return its path."""
    return {"path": str(build(ModelSpec.model_validate(spec), quant))}


def cached_file_is_whole(path: Path, spec: ModelSpec, quant: str) -> bool:
    """Whether a cached GGUF is the complete file `build` writes: its header parses, it holds exactly the
    architecture's tensors, its file type is `quant`, and the file reaches the end of its last tensor.

    The cache outlives the process that wrote it: a disk that filled, a copy cut short or a hand edit
    leave a file whose name still promises the model, and reusing it would fail every run (or measure a
    different file) until someone deletes it by hand."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        names = {t.name for t in reader.tensors}
        end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
        kind = reader_file_type(reader)
    except Exception:  # whatever a damaged header makes the parser raise, the file is not whole
        return False
    expected = {t.name for t in tensors(spec.architecture)}
    return names == expected and kind == quant and path.stat().st_size >= end


def ensure(spec: ModelSpec, quant: str, timeout_s: float = 3600.0) -> Path:
    """The cached GGUF, written first in a child process when missing or damaged: llama.cpp's quantizer
    aborts the process on a bad input, and that must not be bench's own process."""
    target = _checked_target(spec, quant)
    if target.exists():
        if cached_file_is_whole(target, spec, quant):
            return target
        print(f"warning: the cached GGUF {target} is damaged; writing it again", file=sys.stderr)
        target.unlink()
    from bench.launch.isolate import run_isolated

    _remove_leftovers(target)
    outcome = run_isolated("bench.weights.synthetic_gguf:build_isolated_target",
                           {"spec": spec.model_dump(mode="json"), "quant": quant}, timeout_s)
    if outcome.status != "ok" or not target.exists():
        last = [line for line in (outcome.error or "").splitlines() if line.strip()][-1:] or [outcome.status]
        raise UserError(f"writing the synthetic GGUF of {spec.id} in {quant} failed ({outcome.status}): "
                        f"{last[0].strip()}")
    return target
