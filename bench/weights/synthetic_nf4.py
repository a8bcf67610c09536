"""Random-weight models at any scale, quantized by bitsandbytes as they are made, with no checkpoint.

A QLoRA or NF4 run of a real shape (24B) needs the 4-bit model, never a 47 GB 16-bit
checkpoint of it. transformers already quantizes while it loads: each weight that
bitsandbytes takes is read in 16 bits, quantized on its device and dropped before the
next is read. Here the "checkpoint" is a state dict whose tensors are random and made
only when the loader reads them, so `from_pretrained` itself runs: its own rule for
which layers to quantize (every ``nn.Linear`` but lm_head, tied and skipped modules),
its module classes and dtypes, and its markers (``is_loaded_in_4bit``, ``hf_quantizer``,
``config.quantization_config``) that peft and trl read. Peak memory is the quantized
model plus one 16-bit weight.

The state dict holds only the weights bitsandbytes quantizes. The loader initialises
the rest (embeddings, norms, lm_head; every weight of a 16-bit model) as keys missing
from the checkpoint, on the device its device map gives them, with the model's own
``_init_weights``, as ``from_config`` would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def nf4_config(double_quant: bool = True, compute_dtype: torch.dtype = torch.bfloat16):
    """The BitsAndBytesConfig of bench's NF4: QLoRA's quant type, bf16 compute."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
                              bnb_4bit_compute_dtype=compute_dtype)


class RandomWeight:
    """A checkpoint tensor that does not exist until the loader reads it (``tensor[...]``).

    Normal with the config's `initializer_range`, as ``_init_weights`` draws ``nn.Linear``
    weights, made directly on `device` so a GPU build never round-trips through the host.
    """

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, std: float, device: torch.device) -> None:
        self.shape, self.dtype, self.std, self.device = shape, dtype, std, device

    def __getitem__(self, index: Any) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device=self.device).normal_(0.0, self.std)


def random_model(config: Any, *, auto_class: Any, dtype: torch.dtype, device: torch.device, device_map: Any,
                 max_memory: dict | None = None, quantization_config: Any = None, seed: int = 0):
    """A model of `config` with random weights, its quantizable layers quantized one at a time.

    Args:
        config: the model's transformers config (a composite config works: the auto class decides).
        auto_class: the transformers auto class that builds this architecture.
        dtype: what every tensor left unquantized is held in, as ``from_pretrained(dtype=...)``.
        device: where each random 16-bit weight is made before it is quantized.
        device_map, max_memory: passed to ``from_pretrained`` unchanged (one card, several, or the CPU).
        quantization_config: a ``BitsAndBytesConfig`` (NF4 or LLM.int8), or None for 16-bit weights,
            which the loader then initialises in full, each on its device.
    """
    with torch.device("meta"):  # a skeleton costs no memory whatever the shape
        skeleton = auto_class.from_config(config, dtype=dtype)
    weights = {}
    if quantization_config is not None:
        from transformers.quantizers.auto import AutoHfQuantizer

        # The loader's own quantizer, run on the skeleton, names the weights it will quantize.
        quantizer = AutoHfQuantizer.from_config(quantization_config, pre_quantized=False)
        quantizer.preprocess_model(model=skeleton, dtype=dtype, device_map=device_map, checkpoint_files=None,
                                   use_kernels=False)
        std = getattr(config.get_text_config(), "initializer_range", 0.02)
        weights = {name: RandomWeight(tuple(t.shape), dtype, std, torch.device(device))
                   for name, t in skeleton.state_dict().items()
                   if quantizer.param_needs_quantization(skeleton, name)}
    torch.manual_seed(seed)
    with _quiet_missing_keys_report():
        return type(skeleton).from_pretrained(None, config=config, state_dict=weights,
                                              quantization_config=quantization_config, dtype=dtype,
                                              device_map=device_map, max_memory=max_memory)


@contextmanager
def _quiet_missing_keys_report() -> Iterator[None]:
    """The loader warns that the tensors it initialised were "missing from the checkpoint": here that
    is the design. A filter, not a level: transformers reads its logger's level to decide other checks."""
    logger = logging.getLogger("transformers.modeling_utils")

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    logger.addFilter(errors_only)
    try:
        yield
    finally:
        logger.removeFilter(errors_only)
