"""What a safetensors checkpoint really holds, from its tensor headers alone.

A safetensors file starts with 8 bytes (little-endian header length) and a JSON header naming every
tensor's dtype, shape and byte range, so a checkpoint's exact bytes and its parameter count are known
without reading one weight. Pre-quantized checkpoints store packed tensors (eight int4 values in one
I32, two FP4 values in one byte) beside scales and zero points that are not parameters: the logical
count undoes the packing and leaves the auxiliaries out, so it can be checked against the
architecture's arithmetic. Pure arithmetic on parsed headers: the reading is the weights stage's.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError

# A header is JSON describing tensors: a few MB for the largest checkpoints. A larger length is not a header.
MAX_HEADER_BYTES = 100 * 2**20

# Tensors that quantisers store beside the weights; they hold scales, zero points and codebooks, not parameters.
_AUX_SUFFIXES = (".weight_scale", ".weight_scale_inv", ".input_scale", ".output_scale", ".k_scale", ".v_scale",
                 ".qzeros", ".scales", ".g_idx", ".absmax", ".quant_map", ".SCB", ".weight_format",
                 ".nested_absmax", ".nested_quant_map", "_scales", ".weight_zero_point", ".weight_g_idx")
_AUX_MARKERS = (".quant_state.",)

# The bench quant a stored format serves as it is (None: bench has no such format).
FORMAT_QUANT = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "awq": "int4", "gptq": "int4", "bnb-nf4": "nf4",
                "bnb-int8": "int8", "fp32": None, "mxfp4": None}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # safetensors' dtype name: BF16, F8_E4M3, I32, U8, ...
    shape: tuple[int, ...]
    nbytes: int  # from the header's data offsets, exact whatever the dtype

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class DtypeShare:
    tensors: int
    elements: int
    bytes: int


@dataclass(frozen=True)
class CheckpointWeights:
    """A checkpoint's tensors summed by dtype, its stored format and its logical parameter count."""

    format: str  # bf16 | fp16 | fp32 | fp8 | awq | gptq | mxfp4 | bnb-nf4 | bnb-int8
    by_dtype: dict[str, DtypeShare]
    logical_params: int  # parameters with packing undone, scales and zero points left out
    files: int
    packing: dict[str, int] = field(default_factory=dict)  # dtype -> logical values per stored element
    # What a decode step reads differently from the rest (their scales and biases included): the routed
    # experts (read at the share a token visits), the input embedding (one row) and the vision part (not at all).
    expert_bytes: int = 0
    embedding_bytes: int = 0
    vision_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(share.bytes for share in self.by_dtype.values())

    @property
    def tensors(self) -> int:
        return sum(share.tensors for share in self.by_dtype.values())

    @property
    def quant(self) -> str | None:
        """The bench quant this checkpoint is stored in, if bench has one."""
        return FORMAT_QUANT.get(self.format)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "quant": self.quant, "total_bytes": self.total_bytes,
                "tensors": self.tensors, "files": self.files, "logical_params": self.logical_params,
                "by_dtype": {d: {"tensors": s.tensors, "elements": s.elements, "bytes": s.bytes}
                             for d, s in sorted(self.by_dtype.items())}}


def parse_header(prefix: bytes, origin: str) -> tuple[int, dict[str, Any]]:
    """(header length, header) from a file's first bytes; `prefix` must hold the whole header."""
    if len(prefix) < 8:
        raise UserError(f"{origin}: not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_BYTES:
        raise UserError(f"{origin}: not a safetensors file (header length {length:,} bytes)")
    if len(prefix) < 8 + length:
        raise UserError(f"{origin}: the safetensors header is cut short ({len(prefix) - 8} of {length} bytes)")
    try:
        header = json.loads(prefix[8:8 + length])
    except ValueError as err:
        raise UserError(f"{origin}: the safetensors header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise UserError(f"{origin}: the safetensors header is not a JSON object")
    return length, header


def tensors_of(header: Mapping[str, Any], origin: str) -> list[Tensor]:
    """The tensors a parsed header names (its `__metadata__` entry is not one)."""
    found = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            found.append(Tensor(name, str(entry["dtype"]), tuple(int(d) for d in entry["shape"]), int(end - begin)))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{origin}: tensor {name!r} has no dtype, shape and data_offsets") from None
    return found


def summarise(tensors: Iterable[Tensor], quantization_config: Mapping[str, Any] | None = None,
              files: int = 1) -> CheckpointWeights:
    """Bytes and tensors by dtype, the stored format and the logical parameter count."""
    tensors = list(tensors)
    by_dtype: dict[str, DtypeShare] = {}
    for t in tensors:
        s = by_dtype.get(t.dtype, DtypeShare(0, 0, 0))
        by_dtype[t.dtype] = DtypeShare(s.tensors + 1, s.elements + t.elements, s.bytes + t.nbytes)
    fmt = stored_format(tensors, quantization_config or {})
    bits = int((quantization_config or {}).get("bits", 4) or 4)
    logical, packing = 0, {}
    for t in tensors:
        if _is_auxiliary(t.name):
            continue
        per = _values_per_element(t, fmt, bits)
        if per != 1:
            packing[t.dtype] = per
        logical += t.elements * per
    return CheckpointWeights(fmt, by_dtype, logical, files, packing,
                             expert_bytes=sum(t.nbytes for t in tensors if _is_routed_expert(t.name)),
                             embedding_bytes=sum(t.nbytes for t in tensors if "embed_tokens." in t.name),
                             vision_bytes=sum(t.nbytes for t in tensors if _is_vision(t.name)))


def _is_routed_expert(name: str) -> bool:
    """A routed expert's tensor in transformers' layouts (`mlp.experts.3.`, `block_sparse_moe.experts.`,
    gpt-oss's fused `mlp.experts.gate_up_proj_blocks`), not a shared expert every token passes through."""
    return ".experts." in name and "shared_expert" not in name


def _is_vision(name: str) -> bool:
    """The vision tower and projector of a multimodal checkpoint (Mistral 3, Llama 4, Gemma 3 name them so)."""
    return "vision_" in name or "multi_modal_projector" in name


def stored_format(tensors: list[Tensor], quantization_config: Mapping[str, Any]) -> str:
    """The format from the config's `quantization_config` where it names one, else from the tensors."""
    method = str(quantization_config.get("quant_method", "")).lower()
    names = {t.name for t in tensors}
    dtypes = {t.dtype for t in tensors}
    if method in ("awq", "gptq", "mxfp4", "fp8"):
        return method
    if method == "bitsandbytes":
        return "bnb-nf4" if quantization_config.get("load_in_4bit") else "bnb-int8"
    if any(n.endswith(".qweight") for n in names):  # GPTQ keeps each group's input order (g_idx); AWQ has none
        return "gptq" if any(n.endswith(".g_idx") for n in names) else "awq"
    if any(n.endswith("_blocks") for n in names) and any(n.endswith("_scales") for n in names):
        return "mxfp4"
    if any(n.endswith(".absmax") or ".quant_state." in n for n in names):
        return "bnb-nf4"
    if any(n.endswith(".SCB") for n in names):
        return "bnb-int8"
    if "F8_E4M3" in dtypes:
        return "fp8"
    floats = {d: sum(t.nbytes for t in tensors if t.dtype == d) for d in ("BF16", "F16", "F32") if d in dtypes}
    return {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}[max(floats, key=floats.get)] if floats else "bf16"


def _is_auxiliary(name: str) -> bool:
    return name.endswith(_AUX_SUFFIXES) or any(m in name for m in _AUX_MARKERS)


def _values_per_element(t: Tensor, fmt: str, bits: int) -> int:
    """How many weights one stored element holds: 32/bits in an AWQ/GPTQ qweight, two FP4 codes in an
    MXFP4 block byte, two NF4 codes in a bitsandbytes 4-bit byte, else one."""
    if t.name.endswith(".qweight") and t.dtype == "I32":
        return 32 // bits
    if fmt == "mxfp4" and t.name.endswith("_blocks") and t.dtype == "U8":
        return 2
    if fmt == "bnb-nf4" and t.dtype == "U8":
        return 2
    return 1


def cross_check(checkpoint: CheckpointWeights, arithmetic_total: int) -> dict[str, Any]:
    """The checkpoint's logical count against the architecture's: both numbers and whether they agree."""
    diff = checkpoint.logical_params - arithmetic_total
    return {"checkpoint": checkpoint.logical_params, "architecture": arithmetic_total, "difference": diff,
            "matches": diff == 0}
