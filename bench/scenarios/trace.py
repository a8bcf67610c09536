"""A fine-tune step traced at the real size on fake tensors: the tensor peak by category and phase.

A real step of a 24B model needs the GPU the claim is about. PyTorch's fake tensors carry shape,
dtype and device but no storage, so every op runs its real dispatch and shape logic without
compute or memory, and a 100B model's step traces on a laptop. What runs is the program
`bench finetune` runs, built the same way up to the weights:

* the model is made on the meta device from its config (no weights), of the class `load_base`
  loads (a causal LM; for a reward model a one-output sequence classifier), and the trainer is the
  one `bench.scenarios.finetune.make_trainer` builds (trl's SFT, DPO or reward trainer), with the
  recipe's peft config, so trl wraps the model, picks the adapters' dtype and its loss exactly as
  in a run; DPO's reference is the policy with its adapters switched off, as in a run;
* only then is every parameter and buffer replaced by a fake tensor of the same shape and dtype
  on the trace's device (``cuda`` for a card), and the step is the trainer's own: its batches,
  `training_step` (trl's `compute_loss`: SFT's and DPO's through the fused LM head, DPO's with the
  reference's forward under no_grad, both counted as the forward; the backward), gradient
  clipping, the optimizer and scheduler steps and `zero_grad`, `gradient_accumulation` micro
  batches per step. On ``cuda`` the forward runs under bf16 autocast, as accelerate runs it.

Two devices. On ``cpu`` the step is the one `bench finetune --device cpu` takes (no autocast, trl's
torch loss, the CPU's dropout and attention); it is held to the profiler's measured peak on tiny
shapes within 2% (tests/test_trace.py), and runs at any size. On ``cuda`` the model's forward runs
as on a card (bf16 autocast, trl's Triton loss path launching nothing, its token selection by a
boolean mask that is all true here); with a no-op CUDA device guard compiled in for the purpose,
that forward was seen to run on this machine, but a CPU-only build of torch cannot run autograd's
backward over CUDA tensors (the engine syncs CUDA streams and events it does not have):
`cuda_refusal` says so in one line and the trace stops.

The Trainer's own `train()` is not called: it places the model on `args.device` (the CPU on a
machine without a GPU) and reads losses back as numbers. Its loop is reproduced call for call
(`_step`), and the differences are these: the model is never moved (it is built where it trains;
a fake tensor cannot be swapped by `Module.to`), inputs go to the trace's device, and values read
back to Python (`.item()`, a tensor's truth), which a fake tensor does not have, are answered by
a stand-in (1) and counted in the result with where they were read: trl's logged metrics, the
optimizer's step count, the padding mask's "all true" (rows are full length); never a shape.
Selections by a boolean mask take the mask as all true (`_all_true_mask`). One is not all true in
a run: DPO's metrics pick the completion tokens' mean logits by the completion mask (trl
dpo_trainer.py, `logits/chosen`); the trace keeps every position there, a one-number-per-token
temporary (the run keeps about half of them) that is summed at once.

Memory is counted by `LiveStorages`, a dispatch mode that sees every op's outputs and holds a
weak reference to each storage, so a storage counts from the op that made it until the last
tensor on it dies (the moment the allocator would free it). A CPU elementwise op's casts of
inputs of another dtype are made inside its kernel, out of the mode's sight; they are counted
for the op's duration (`_cpu_promotion_bytes`). The trace cannot see what no tensor holds
(`UNSEEN`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench.launch.environment import observed_hardware, software_versions
from bench.launch.progress import counted, phase
from bench.scenarios.finetune import StepLog, base_dtype, base_parts, lora_config, make_trainer, quant_state_tensors
from bench.scenarios.finetune_settings import FinetuneSettings
from bench.scenarios.trace_settings import UNSEEN, routes_by_value, unsupported_trace

CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations", "temporaries", "inputs")
PHASES = ("forward", "backward", "optimizer")
_MASK_OPS = (torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default)
_DISPATCH_FILES = ("/torch/utils/_", "/torch/_")  # torch's dispatch, wrappers and decorators, not its callers
STAND_IN = 1  # the value a read-back of a fake tensor gets (see the module docstring)


class LiveStorages(TorchDispatchMode):
    """Every live storage with its size and category; the peak of their total, overall and per phase.

    A storage's category is what it turned out to be: parameters (registered at the start),
    gradients (marked when autograd accumulates them), optimizer state (what the optimizer holds
    after its step), activations (made by a forward and still alive when that forward ended:
    what autograd saved for backward, and the loss), inputs (the batch), temporaries (the rest).
    The composition of each peak is read at the end, so a gradient that is still a fresh
    output at the peak moment counts as a gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.phase = "setup"
        self._live: dict[int, int] = {}  # storage key -> bytes, while the storage lives
        self._size: dict[int, int] = {}
        self._made_in: dict[int, str] = {}
        self._category: dict[int, str] = {}
        self._refs: dict[int, weakref.ref] = {}  # id(storage) -> its weak reference, while it lives
        self._keys: dict[int, int] = {}  # id(storage) -> key
        self._next = 0
        self.total = 0
        self.peaks: dict[str, tuple[int, tuple[int, ...]]] = {}  # phase -> (bytes, live keys at that moment)
        self.reads: dict[str, int] = {}  # where a fake tensor's value was read -> how often

    # -- storages ---------------------------------------------------------------------------------

    def track(self, tensor: torch.Tensor, category: str | None = None) -> None:
        storage = tensor.untyped_storage()
        sid = id(storage)
        ref = self._refs.get(sid)
        if ref is None or ref() is not storage:
            key = self._next
            self._next += 1
            self._keys[sid] = key
            self._refs[sid] = weakref.ref(storage, lambda _r, k=key, s=sid: self._freed(k, s))
            size = storage.nbytes()
            self._live[key], self._size[key], self._made_in[key] = size, size, self.phase
            self.total += size
        if category is not None:
            self._category[self._keys[sid]] = category

    def _freed(self, key: int, sid: int) -> None:
        self.total -= self._live.pop(key, 0)
        if self._keys.get(sid) == key:
            del self._keys[sid], self._refs[sid]
        if self._made_in[key] == self.phase and key not in self._category:
            self._category[key] = "temporaries"  # made and gone within one phase

    def end_forward(self) -> None:
        """What a forward made and still holds is what backward will read: activations."""
        for key in self._live:
            if self._made_in[key] == "forward" and key not in self._category:
                self._category[key] = "activations"

    def _note_peak(self) -> None:
        best = self.peaks.get(self.phase)
        if best is None or self.total > best[0]:
            self.peaks[self.phase] = (self.total, tuple(self._live))

    # -- dispatch ---------------------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            return self._stand_in(args[0])
        if func is torch.ops.aten.nonzero.default:
            raise ValueError(f"a data-dependent shape (aten.nonzero at {self._call_site()}): a fake-tensor trace "
                             "cannot know it")
        if func in _MASK_OPS and any(i is not None and i.dtype == torch.bool for i in args[1]):
            out = self._all_true_mask(func, *args)
        elif func.name() == "bitsandbytes::gemm_4bit" and _dequantizes_first(args[0]):
            from bitsandbytes.backends.default.ops import _gemm_4bit_default_impl

            with self:  # its dequantized weight and output, counted as they are made
                return _gemm_4bit_default_impl(*args, **(kwargs or {}))
        else:
            out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf)
        self._note_peak()
        cast = _cpu_promotion_bytes(func, args)
        if cast:  # alive with the op's inputs and outputs, gone when it returns
            key, self._next = self._next, self._next + 1
            self._live[key], self._size[key], self._made_in[key] = cast, cast, self.phase
            self._category[key] = "temporaries"
            self.total += cast
            self._note_peak()
            self.total -= self._live.pop(key)
        return out

    def _all_true_mask(self, func, source: torch.Tensor, indices, *rest):
        """A selection by boolean mask, every mask all true (see `trace_step`): `x[mask]` is a copy of x with
        the mask's dims merged into one of their size; `index_put` writes into a tensor of its input's shape."""
        where = self._call_site()
        where = f"{where} (boolean mask taken as all true)"
        self.reads[where] = self.reads.get(where, 0) + 1
        if func is torch.ops.aten.index_put_.default:
            return source
        if func is torch.ops.aten.index_put.default:
            return torch.empty_like(source)
        (lead,) = [d for d, i in enumerate(indices) if i is not None]  # one mask, as trl's loss selects tokens
        mask = indices[lead]
        kept = (*source.shape[:lead], mask.numel(), *source.shape[lead + mask.dim():])
        return torch.empty(kept, dtype=source.dtype, device=source.device)

    def _call_site(self) -> str:
        frame = next((f for f in reversed(traceback.extract_stack()[:-3])
                      if f.filename != __file__ and not any(part in f.filename for part in _DISPATCH_FILES)), None)
        return f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}" if frame else "?"

    def _stand_in(self, tensor: torch.Tensor) -> bool | int | float:
        where = self._call_site()
        self.reads[where] = self.reads.get(where, 0) + 1
        if tensor.dtype == torch.bool:
            return bool(STAND_IN)
        return float(STAND_IN) if tensor.is_floating_point() else STAND_IN

    # -- results ----------------------------------------------------------------------------------

    categories, phases = CATEGORIES, PHASES  # what a result reports; a generate's trace has its own

    def breakdown(self, keys: tuple[int, ...]) -> dict[str, int]:
        out = dict.fromkeys(self.categories, 0)
        for key in keys:
            out[self._category.get(key, "temporaries")] += self._size[key]
        return out

    def result(self) -> dict[str, Any]:
        phases = {name: {"peak_bytes": total, "by_category": self.breakdown(keys)}
                  for name, (total, keys) in self.peaks.items() if name in self.phases}
        top = max(phases, key=lambda name: phases[name]["peak_bytes"])
        return {"peak_bytes": phases[top]["peak_bytes"], "peak_phase": top,
                "by_category": phases[top]["by_category"], "phases": phases,
                "read_backs": dict(sorted(self.reads.items()))}


_NOT_PROMOTING = (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)


def _cpu_promotion_bytes(func, args: tuple) -> int:
    """The casts a CPU elementwise op makes inside its kernel, where no dispatch mode sees them. On a CPU,
    TensorIterator brings every input of another dtype to the op's common dtype by a temporary copy, and an
    in-place op whose tensor is not of that dtype computes into a temporary of it, copied back (a bf16 base
    output plus a LoRA adapter's fp32 one: a full fp32 copy of the bf16 tensor). A CUDA kernel casts as it
    reads, with no copy. Boolean masks and conditions are not promoted."""
    if torch.Tag.pointwise not in func.tags or func in _NOT_PROMOTING:
        return 0
    tensors = [a for a in args if isinstance(a, torch.Tensor) and a.dtype != torch.bool]
    if len({t.dtype for t in tensors}) < 2 or any(t.device.type != "cpu" for t in tensors):
        return 0
    from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

    operands = [a for a in args if isinstance(a, (torch.Tensor, int, float)) and not isinstance(a, bool)
                and not (isinstance(a, torch.Tensor) and a.dtype == torch.bool)]
    common = elementwise_dtypes(*operands, type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.NO_OPMATH)[0]
    cast = sum(t.numel() * common.itemsize for t in tensors if t.dtype != common)
    if func._schema.is_mutable and args[0].dtype != common:
        cast += args[0].numel() * common.itemsize
    return cast


# bitsandbytes 0.50's CUDA kernel for gemm_4bit multiplies from the packed codes only while the rows are at most
# this many (backends/cuda/ops.py, `_gemm_4bit_custom_max_m`); past it, and always on a CPU, which has no kernel
# of its own for it, the op dequantizes the whole weight to the input's dtype and then multiplies (the default
# implementation, backends/default/ops.py): a temporary of the full 16-bit weight, layer by layer.
_GEMM_4BIT_FUSED_MAX_ROWS = 1536


def _dequantizes_first(rows: torch.Tensor) -> bool:
    """Whether bitsandbytes' gemm_4bit on these input rows dequantizes its weight before multiplying."""
    return rows.device.type != "cuda" or rows.numel() // rows.shape[-1] > _GEMM_4BIT_FUSED_MAX_ROWS


@contextlib.contextmanager
def cuda_autocast(dtype: torch.dtype) -> Iterator[None]:
    """CUDA autocast as `torch.autocast("cuda", dtype)` enters it (accelerate's, for bf16), without its check
    for a CUDA device, which turns it off on this machine: the fake tensors are CUDA tensors, and autocast acts
    on their dispatch key."""
    enabled, previous = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled("cuda", enabled)
        torch.set_autocast_dtype("cuda", previous)


class _NoLaunch:
    """A Triton kernel on fake tensors: it writes into tensors allocated before its launch and allocates none,
    so tracing it is launching nothing (its outputs' values are never read)."""

    def __getitem__(self, grid: Any):
        return lambda *args, **kwargs: None


def cuda_refusal(fake_mode: Any) -> str | None:
    """Why a step over fake CUDA tensors cannot run here, as one line; None if it can. A CPU-only torch (2.13)
    has no CUDA device guard (indexing a CUDA tensor takes one) and no CUDA accelerator, whose streams and
    events autograd's engine uses to accumulate gradients (`InputBuffer::add`). With a no-op guard compiled
    in, the forward was seen to run on this machine and the backward to fail."""
    if not torch.backends.cuda.is_built():
        return ("fake CUDA tensors need torch built with CUDA (its device guard, and the streams and events "
                "autograd's backward accumulates gradients with); trace with --device cpu")
    with fake_mode:
        x = torch.empty(2, device="cuda", requires_grad=True)
        try:
            (x * x).sum().backward()
        except RuntimeError as exc:
            return (f"a backward over fake CUDA tensors needs torch built with CUDA ({str(exc).splitlines()[0]}, "
                    "from autograd's gradient accumulation); trace with --device cpu, or on a CUDA build of torch")
    return None


def trace_rows(tokens: int, sequences: int, vocab: int, method: str = "lora",
               tokenizer: Any = None) -> list[dict[str, Any]]:
    """Rows whose every micro batch is micro_batch x `tokens` (a preference row is a pair: twice that). SFT and
    reward rows are pre-tokenized, exactly `tokens` ids each (their values do not matter to a fake model; they
    skip the tokenizer's special ids). trl 1.16's DPO trainer takes text only (it tokenizes the prompt and each
    answer itself), so a DPO row is text: a prompt of about half the tokens and answers as long again, which
    trl's collator cuts to `tokens` (`max_length`): full length, its prompt about half, as a run's rows."""
    def ids(i: int, n: int) -> list[int]:
        return [4 + (i * 7 + j) % (vocab - 4) for j in range(n)]

    if method == "dpo":
        prompt = _text_of(tokenizer, tokens // 2)
        chosen, rejected = (" " + _text_of(tokenizer, tokens, first) for first in (0, 5))
        return [{"prompt": prompt, "chosen": chosen, "rejected": rejected} for _ in range(sequences)]
    if method == "reward":
        return [{"chosen_ids": ids(i, tokens), "rejected_ids": ids(i + 1, tokens)} for i in range(sequences)]
    return [{"input_ids": ids(i, tokens)} for i in range(sequences)]


_WORDS = "one two three four five six seven eight nine ten".split()


def _text_of(tokenizer: Any, tokens: int, first: int = 0) -> str:
    """The shortest run of plain words (from the `first`) that the tokenizer makes at least `tokens` tokens of."""
    def text(n: int) -> str:
        return " ".join(_WORDS[(first + i) % len(_WORDS)] for i in range(n))

    def count(n: int) -> int:
        return len(tokenizer(text(n), add_special_tokens=False)["input_ids"])

    low, high = 0, max(tokens, 1)
    while count(high) < tokens:
        low, high = high, 2 * high
    while high - low > 1:  # the count grows with the words: the fewest that reach `tokens`
        mid = (low + high) // 2
        low, high = (low, mid) if count(mid) >= tokens else (mid, high)
    return text(high)


def _meta_model(s: FinetuneSettings):
    """The tokenizer and the model on the meta device, of the class `load_base` loads: a causal LM, or for a
    reward model a sequence classifier with one output whose padding id is the tokenizer's (it scores the last
    token that is not padding)."""
    reward = s.recipe["method"] == "reward"
    tokenizer, config, auto_class = base_parts(s.model_path, reward)
    with torch.device("meta"):
        model = auto_class.from_config(config, dtype=base_dtype(s.recipe, s.device, s.cpu_dtype))
    if reward:
        model.config.pad_token_id = tokenizer.pad_token_id
    if s.recipe["quant"] == "nf4":
        _four_bit_linears(model, s.recipe)
    return tokenizer, model


def _four_bit_linears(model: Any, recipe: dict[str, Any]) -> None:
    """bitsandbytes' 4-bit linears put in place as `from_pretrained` puts them for bench's NF4: the quantizer's
    own choice of modules (every linear but lm_head and the skipped ones), then its markers (`hf_quantizer`,
    `config.quantization_config`, `is_loaded_in_4bit`) that trl and peft read to take the QLoRA path. The
    weights stay 16-bit on meta until they become fake (`_fake_4bit`), where loading would quantize them."""
    from transformers.quantizers import AutoHfQuantizer

    from bench.weights.synthetic_nf4 import nf4_config

    # A 16-bit checkpoint quantized as it loads: not pre-quantized (a pre-quantized one would, for one, split Llama
    # 4's fused experts into 4-bit linears, which loading a 16-bit checkpoint leaves fused and 16-bit).
    quantizer = AutoHfQuantizer.from_config(nf4_config(double_quant=recipe["double_quant"]), pre_quantized=False)
    quantizer.preprocess_model(model, device_map=None)
    model.hf_quantizer = quantizer
    quantizer.postprocess_model(model)


def _not_moved(trainer: Any, model: Any, device: Any) -> None:
    """Stands in for Trainer._move_model_to_device: the model is built where it trains."""


def _to_fake(model: Any, fake_mode: Any, device: str, dtype: torch.dtype) -> None:
    """Each parameter and buffer replaced by a fake tensor of its shape and dtype on `device` (a tied
    weight stays one tensor), keeping which parameters train."""
    made: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, value in list(table.items()):
                if value is None:
                    continue
                if id(value) not in made:
                    made[id(value)] = _fake_of(value, fake_mode, device, dtype)
                table[name] = made[id(value)]


def _fake_of(value: torch.Tensor, fake_mode: Any, device: str, dtype: torch.dtype) -> torch.Tensor:
    """A fake tensor of `value`'s shape and dtype on `device`; a parameter stays one, and a 4-bit weight not yet
    loaded becomes what loading a `dtype` checkpoint would make of it."""
    if getattr(value, "bnb_quantized", None) is False:
        return _fake_4bit(value, fake_mode, device, dtype)
    with fake_mode:
        fake = torch.empty(value.shape, dtype=value.dtype, device=device)
    return torch.nn.Parameter(fake, requires_grad=value.requires_grad) if isinstance(value, torch.nn.Parameter) \
        else fake


FOUR_BIT_ATTRIBUTES = ("blocksize", "compress_statistics", "quant_type", "quant_storage", "module")


def _fake_4bit(weight: Any, fake_mode: Any, device: str, dtype: torch.dtype) -> torch.nn.Parameter:
    """The weight `Params4bit._quantize` makes as the model loads, on fake tensors: bitsandbytes' own
    `quantize_4bit` over a fake `dtype` weight of the linear's shape (its packed codes, absmax, and with double
    quantization the 8-bit absmax and its state), held as a frozen parameter with the attributes Linear4bit,
    peft and bitsandbytes' matmul read. The parameter is not of class Params4bit: that class is made with
    `torch.Tensor._make_subclass`, which cannot wrap a fake tensor; nothing on the training step tests it."""
    import bitsandbytes as bnb

    # Double quantization reads bitsandbytes' 8-bit code table, which it computes from values once per process
    # and caches; a fake tensor has no values, so one small real quantization makes the table first.
    bnb.functional.quantize_blockwise(torch.zeros(256))
    with fake_mode:
        full = torch.empty(weight.module.out_features, weight.module.in_features, dtype=dtype, device=device)
        packed, state = bnb.functional.quantize_4bit(full, blocksize=weight.blocksize,
                                                     compress_statistics=weight.compress_statistics,
                                                     quant_type=weight.quant_type, quant_storage=weight.quant_storage)
    param = torch.nn.Parameter(packed, requires_grad=False)
    for name in FOUR_BIT_ATTRIBUTES:
        setattr(param, name, getattr(weight, name))
    param.quant_state, param.bnb_quantized = state, True
    if weight.module is not None:
        weight.module.quant_state = state
    return param


def build_trainer(s: FinetuneSettings, fake_mode: Any):
    """The trainer `bench finetune` builds, over a model whose every tensor is fake."""
    from transformers import Trainer

    tokenizer, model = _meta_model(s)
    recipe = s.recipe
    peft_config = lora_config(recipe, model, recipe["method"] == "reward")[0]
    rows = trace_rows(recipe["sequence_length"], recipe["micro_batch"] * recipe["gradient_accumulation"] * s.steps,
                      min(model.config.get_text_config().vocab_size, len(tokenizer)), recipe["method"], tokenizer)
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(Trainer, "_move_model_to_device", _not_moved))
        if s.device == "cuda":  # the card traced for computes in bf16 (Ampere and later); this machine has none
            stack.enter_context(mock.patch("transformers.training_args.is_torch_bf16_gpu_available", lambda: True))
        trainer = make_trainer(s, model, tokenizer, rows, peft_config, StepLog())
    _to_fake(trainer.model, fake_mode, s.device, base_dtype(s.recipe, s.device, s.cpu_dtype))
    return trainer


def _step(trainer: Any, samples: list[dict[str, Any]], num_items: Any, live: LiveStorages) -> None:
    """One optimizer step as Trainer._inner_training_loop takes it (see the module docstring)."""
    trainer.current_gradient_accumulation_steps = len(samples)
    for inputs in samples:
        live.phase = "forward"
        trainer.training_step(trainer.model, inputs, num_items)
    live.phase = "optimizer"
    if trainer.args.max_grad_norm > 0:
        trainer._clip_grad_norm(trainer.model)
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    trainer.model.zero_grad()
    for state in trainer.optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                live.track(value, "optimizer_state")
    live.phase = "between steps"


def _instrument(trainer: Any, live: LiveStorages, device: str, fake_mode: Any, shapes: set[tuple[int, ...]]) -> None:
    """Phase marks around trl's loss (for DPO: the policy's forward, then the reference's under no_grad, both
    forward) and the backward, inputs on the trace's device, autocast as accelerate's; each micro batch's
    `input_ids` shape goes into `shapes`."""
    compute_loss = trainer.compute_loss

    def loss_then_mark(*a, **kw):
        loss = compute_loss(*a, **kw)
        live.end_forward()
        live.phase = "backward"
        return loss

    def to_device(inputs):
        shapes.add(tuple(inputs["input_ids"].shape))
        with fake_mode:
            return {k: live_input(v) for k, v in inputs.items()}

    def live_input(value):
        if not isinstance(value, torch.Tensor):
            return value
        # Shape and dtype only: a fake made from a small real tensor keeps its values as a constant that ops run
        # real kernels on, which a CUDA-less torch cannot. Rows are full-length, so no value changes a shape.
        fake = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=device)
        live.track(fake, "inputs")
        return fake

    trainer.compute_loss = loss_then_mark
    trainer._prepare_inputs = to_device
    if trainer.args.bf16:
        trainer.compute_loss_context_manager = lambda: cuda_autocast(torch.bfloat16)


def trace_step(s: FinetuneSettings) -> dict[str, Any]:
    """Trace `s.steps` optimizer steps of the recipe (the first makes the optimizer's state) and return the
    tensor peak overall and per phase, each by category."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(s.model_path).get_text_config()
    moe = routes_by_value(text.model_type, bool(getattr(text, "num_local_experts", None)
                                                or getattr(text, "num_experts", None)
                                                or getattr(text, "n_routed_experts", None)))
    refused = unsupported_trace(s.recipe["method"], s.recipe["quant"], moe, s.recipe["dpo_reference"], s.device)
    if refused:
        raise ValueError(refused)
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("torch._subclasses.fake_tensor.CONSTANT_NUMEL_LIMIT", -1))
        stack.enter_context(mock.patch("transformers.masking_utils.is_tracing", _graph_tracing))
        from trl.kernels import chunked_logprob

        for kernel in ("_forward_kernel", "_backward_kernel"):
            if hasattr(chunked_logprob, kernel):
                stack.enter_context(mock.patch.object(chunked_logprob, kernel, _NoLaunch()))
        return _trace(s, FakeTensorMode(allow_non_fake_inputs=True))


def _graph_tracing(tensor: Any = None) -> bool:
    """transformers' `is_tracing` for its masks, less its fake-tensor test: it takes a fake mask for a graph
    being captured and builds a full causal mask where a run reads the padding mask and leaves the causality
    to the attention kernel. Here the run is traced, not captured: the mask's read (all true: rows are full
    length) is a counted stand-in, and the path is the run's."""
    from transformers.utils.import_utils import is_tracing

    return is_tracing(None)


def _trace(s: FinetuneSettings, fake_mode: Any) -> dict[str, Any]:
    """`trace_step` with fake tensors that keep no values: a fake tensor mode runs the real kernel on a
    one-element tensor to keep its value (constant propagation), which fails on a device this torch was not
    built for, and values never change a shape here; a value read back is a stand-in, counted."""
    if s.device == "cuda":
        phase("checking that a backward runs over fake CUDA tensors")
        refused = cuda_refusal(fake_mode)
        if refused:
            raise ValueError(refused)
    phase("building the model on fake tensors")
    trainer = build_trainer(s, fake_mode)
    live = LiveStorages()
    model = trainer.model
    for value in (*model.parameters(), *model.buffers(), *quant_state_tensors(model)):
        live.track(value, "parameters")
    for param in model.parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(lambda p: live.track(p.grad, "gradients"))
    trainer.create_optimizer()
    trainer.create_scheduler(num_training_steps=s.steps)
    if trainer.args.gradient_checkpointing:  # as Trainer.train() turns it on
        trainer.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
    shapes: set[tuple[int, ...]] = set()
    _instrument(trainer, live, s.device, fake_mode, shapes)
    model.train()
    batches = iter(trainer.get_train_dataloader())
    started = time.perf_counter()
    for step in range(s.steps):
        phase(counted("traced step", step + 1, s.steps))
        # The batches are real, made by the trainer's own data loader; they become fake as they reach the model.
        samples, num_items = trainer.get_batch_samples(batches, trainer.args.gradient_accumulation_steps,
                                                       trainer.args.device)
        with fake_mode, live:
            _step(trainer, samples, num_items, live)
    recipe = s.recipe
    full = (2 * recipe["micro_batch"], recipe["sequence_length"])
    if recipe["method"] == "dpo" and shapes != {full}:  # its rows are text: the tokenizer sets their length
        raise ValueError(f"the DPO trace's text rows made micro batches of {sorted(shapes)} tokens, not {full}: "
                         "this tokenizer does not cut them to full length")
    result = live.result()
    trainable = [p for p in model.parameters() if p.requires_grad]
    import resource

    result.update(trace_s=time.perf_counter() - started, steps=s.steps,
                  # this process's peak RSS (Linux reports KiB): what holding the whole model really cost
                  rss_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  trainable_parameter_bytes=sum(p.numel() * p.element_size() for p in trainable),
                  trainable_params=sum(p.numel() for p in trainable), device=s.device,
                  dtype=str(base_dtype(s.recipe, s.device, s.cpu_dtype)).removeprefix("torch."),
                  autocast="bf16" if trainer.args.bf16 else None, trainer=type(trainer).__name__,
                  # the trainer's micro batches (DPO and reward: chosen and rejected stacked), one shape if all agree
                  micro_batch_shape=list(*shapes) if len(shapes) == 1 else sorted(map(list, shapes)))
    return result


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    """Child-process entry point (`bench.launch.isolate`): the trace's metrics, details and versions."""
    from bench.scenarios.inference import metric

    with tempfile.TemporaryDirectory(prefix="bench-trace-") as work:
        s = FinetuneSettings(**{**settings, "adapter_dir": str(Path(work) / "adapter")})
        traced = trace_step(s)
    return _trace_result(traced, s.device, {"trainable_params": metric(traced["trainable_params"], "params")},
                         {"engine": "fake-tensor trace", "unseen": list(UNSEEN), "trainer": traced["trainer"]},
                         answered=STAND_IN)


def _trace_result(traced: dict[str, Any], device: str, own_metrics: dict[str, Any], engine: dict[str, Any],
                  answered: str) -> dict[str, Any]:
    """What every trace record carries, from what the trace saw: the peak and each category's bytes (then the
    trace's `own_metrics`), its time and RSS; notes on the peak's phase and parts, what a trace cannot see, and
    the values read back from fake tensors (`answered`: what they were answered with)."""
    from bench.scenarios.inference import metric
    from bench.units import gib

    metrics = {"traced_peak_bytes": metric(traced["peak_bytes"], "bytes"),
               **{f"traced_{name}_bytes": metric(value, "bytes") for name, value in traced["by_category"].items()},
               **own_metrics,
               "trace_s": metric(traced["trace_s"], "s"),
               "trace_rss_peak_bytes": metric(traced["rss_peak_bytes"], "bytes")}
    parts = ", ".join(f"{name.replace('_', ' ')} {gib(value)}" for name, value in traced["by_category"].items()
                      if value)
    notes = [f"traced tensor peak {gib(traced['peak_bytes'])} in the {traced['peak_phase']} ({parts})",
             "a trace on fake tensors sees tensors only; not seen: " + "; ".join(UNSEEN)]
    if traced["read_backs"]:
        reads = ", ".join(f"{where} ({count})" for where, count in traced["read_backs"].items())
        notes.append(f"values read back from fake tensors, answered with {answered}: {reads}")
    hardware = {**observed_hardware("cpu"), "device": device,
                "device_name": f"fake {device} tensors (traced on the CPU, no device memory held)"}
    return {"metrics": metrics, "memory": traced, "engine": engine,
            "emulation": {"emulated": False, "reason": "a trace on fake tensors holds no device memory"},
            "hardware": hardware, "software": software_versions(), "notes": notes}


# -- inference: `bench run --backend transformers`, load and one generate, traced -------------------------------
#
# The model is the one `TransformersBackend.load` loads (its auto class and dtype), made on meta and then fake;
# loading holds the weights only, so the peak is the generate's, which is the backend's own `generate` (random
# prompts, min_new_tokens = max_new_tokens, greedy, the dynamic cache). Three kinds of value read are answered
# without a value: the stop check from the length (with min_new_tokens = max_new_tokens only the length stops a
# run); `isin` (special-token masks) by its shape; the rest by the stand-in, 1 or true, which is the run's answer
# where the path depends on it (the attention mask is all ones) and not where only a warning does (a negative
# end-of-sequence id, right padding: transformers logs both, wrongly, in a trace's log). On tiny shapes the peak
# matches the profiler's within 2% (tests/test_trace.py) from 128 prompt rows up; with fewer rows torch's CPU
# bf16 matmul allocates scratch of its own, which no dispatch mode sees.

INFERENCE_CATEGORIES = ("parameters", "kv_cache", "activations", "temporaries", "inputs")
INFERENCE_PHASES = ("prefill", "decode")
INFERENCE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # bench.jobs.inference: fp16 cast, else bf16


class GenerateStorages(LiveStorages):
    """`LiveStorages` over one generate: phases prefill and decode, and the KV cache as its own category (the
    cache layers' keys and values, read from the model's output after each forward). What a forward made and
    still holds when it returns (its logits, the grown ids) is an activation; what it freed, a temporary."""

    categories, phases = INFERENCE_CATEGORIES, INFERENCE_PHASES

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten.isin:  # its decomposition reads values; its shape is its input's
            elements = args[0] if isinstance(args[0], torch.Tensor) else None
            where = f"{self._call_site()} (isin: shape only)"
            self.reads[where] = self.reads.get(where, 0) + 1
            out = torch.empty(elements.shape if elements is not None else (), dtype=torch.bool,
                              device=(elements if elements is not None else args[1]).device)
            self.track(out)
            self._note_peak()
            return out
        # Under inference mode a value read reaches the modes whole (`item`, a tensor's truth), not as the
        # `_local_scalar_dense` it decomposes into below this mode: it is answered here.
        if func is torch.ops.aten.is_nonzero.default:
            return bool(self._stand_in(args[0]))
        if func is torch.ops.aten.item.default:
            return self._stand_in(args[0])
        return super().__torch_dispatch__(func, types, args, kwargs)

    def end_pass(self, output: Any) -> None:
        cache = getattr(output, "past_key_values", None)
        for layer in getattr(cache, "layers", ()):
            for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if isinstance(tensor, torch.Tensor) and tensor.numel():
                    self.track(tensor, "kv_cache")
        for key in self._live:
            if self._made_in[key] == self.phase and key not in self._category:
                self._category[key] = "activations"
        self.phase = "decode"



def meta_inference_model(model_path: str, dtype: torch.dtype):
    """The model `TransformersBackend.load` loads, on the meta device: the auto class it picks, at its dtype,
    with the checkpoint's generation config as `from_pretrained` reads it."""
    from transformers import AutoConfig, GenerationConfig

    from bench.backends.hf import auto_class_for

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = auto_class_for(config).from_config(config, dtype=dtype)
    with contextlib.suppress(OSError):  # a checkpoint without generation_config.json keeps the config's
        model.generation_config = GenerationConfig.from_pretrained(model_path)
    return model


def trace_generate(model_path: str, quant: str, prompt_len: int, batch: int, output_len: int,
                   vocab_size: int, device: str = "cpu") -> dict[str, Any]:
    """One generate of `bench run --backend transformers`, traced on fake tensors: `batch` random prompts of
    `prompt_len` tokens, `output_len` new tokens, by the backend's own `generate`. Returns the tensor peak
    overall and per phase, each by category."""
    import random

    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers.generation import utils as generation_utils

    from bench.backends.hf import TransformersBackend
    from bench.scenarios.inference import random_prompts

    if quant not in INFERENCE_DTYPES or device != "cpu":  # `bench.jobs.trace.inference_refusal` says why
        raise ValueError(f"an inference trace runs bf16 or fp16 on the CPU, not {quant} on {device}")
    dtype = INFERENCE_DTYPES[quant]
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    phase("building the model on fake tensors")
    model = meta_inference_model(model_path, dtype)
    _to_fake(model, fake_mode, device, dtype)
    model.eval()
    live = GenerateStorages()
    for value in (*model.parameters(), *model.buffers()):
        live.track(value, "parameters")
    model.register_forward_hook(lambda _module, _args, output: live.end_pass(output))
    backend = TransformersBackend(_engine_settings(model_path, quant, device, prompt_len + output_len, batch))
    backend.model = backend_model = model
    real_generate, stops = backend_model.generate, []

    def generate(**kwargs):
        for name in ("input_ids", "attention_mask"):
            live.track(kwargs[name], "inputs")
        return real_generate(**kwargs)

    def stop_at_length(check, unfinished, tokens, length):
        """The stop check answered from the length: with min_new_tokens = max_new_tokens only the length can
        stop a run (end-of-sequence is masked until then), and a fake tensor has no value to read."""
        if check.streamer is not None:
            check.streamer.put(tokens.cpu())
        stops.append(length)
        return length >= prompt_len + output_len

    prompts = random_prompts(batch, prompt_len, vocab_size, random.Random(0))
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("torch._subclasses.fake_tensor.CONSTANT_NUMEL_LIMIT", -1))
        stack.enter_context(mock.patch("transformers.masking_utils.is_tracing", _graph_tracing))
        stack.enter_context(mock.patch.object(generation_utils.StopCheck, "__call__", stop_at_length))
        stack.enter_context(mock.patch.object(backend_model, "generate", generate))
        phase(f"tracing one generate: {batch} x {prompt_len} prompt tokens, {output_len} new")
        live.phase = "prefill"
        with fake_mode, live:
            (gen, *_) = backend.generate(prompts, output_len)
    if gen.output_tokens != output_len or len(gen.token_times) != output_len:
        raise RuntimeError(f"the traced generate made {gen.output_tokens} tokens ({len(gen.token_times)} steps), "
                           f"asked for {output_len}")
    result = live.result()
    if stops:
        result["read_backs"][f"generation/utils.py StopCheck (answered from the length, {len(stops)} steps)"] = \
            len(stops)
    import resource

    result.update(trace_s=time.perf_counter() - started, device=device, dtype=str(dtype).removeprefix("torch."),
                  rss_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  output_tokens=gen.output_tokens, model_class=type(model).__name__,
                  attn_implementation=getattr(model.config, "_attn_implementation", None))
    return result


def _engine_settings(model_path: str, quant: str, device: str, max_len: int, batch: int):
    """The engine settings `bench run` gives the backend (bench.jobs.inference), those its generate reads."""
    from bench.backends.base import EngineSettings

    return EngineSettings(model_path=model_path, device=device, dtype=str(INFERENCE_DTYPES[quant]).removeprefix(
        "torch."), quant=quant, max_model_len=max_len, max_batch=batch, enforce_eager=True)


def measure_inference(settings: dict[str, Any]) -> dict[str, Any]:
    """Child-process entry point (`bench.launch.isolate`) of `bench trace --quant`: the traced generate's metrics,
    details and versions."""
    traced = trace_generate(**settings)
    return _trace_result(traced, traced["device"], {},
                         {"engine": "fake-tensor trace", "unseen": list(UNSEEN), "traced": "transformers generate",
                          "model_class": traced["model_class"], "attn_implementation": traced["attn_implementation"]},
                         answered=f"{STAND_IN} unless said")
