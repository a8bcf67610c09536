"""The causal-LM loss's memory, forward and backward, measured on the CPU for each Hugging Face loss bench models.

The training estimate charges the loss a number of bytes per token and vocabulary entry
(`bench.estimate.training.hf_loss_bytes_per_token`). This module runs the loss's exact op
sequence on a tiny LM head (hidden states -> bf16 logits -> the loss -> backward) and reads
torch's allocator through the profiler's memory events, so that number is held to what the
allocator holds, not to the estimator's own arithmetic.

* `hf`: transformers' installed `ForCausalLMLoss`, called as the model calls it: the model's
  output keeps the bf16 logits until the trainer's `compute_loss` returns the loss alone.
* `hf_legacy`: the tail of `LlamaForCausalLM.forward` before transformers 4.46 (4.40 and 4.43
  alike): `logits = self.lm_head(hidden_states)`, `logits = logits.float()` (the output keeps it),
  `shift_logits = logits[..., :-1, :].contiguous()`, `CrossEntropyLoss()(shift_logits.view(-1, V), ...)`.

In both the trainer drops the model's output before `backward` (`Trainer.training_step`), as here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench.calibration.profiler import cpu_allocations

HF_LOSSES = ("hf", "hf_legacy")
_BACKWARD = "bench.calibration.loss_probe.backward"


@dataclass(frozen=True)
class LossPeaks:
    forward_bytes: int  # the loss path's peak until the loss exists, above the hidden states and the LM head
    backward_bytes: int  # the peak of its backward, above the same
    tokens: int
    vocab: int


def _model_forward_loss(loss: str, lm_head: torch.nn.Linear, hidden: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor:
    """The model's forward from the last hidden states, returning what `compute_loss` returns: the loss alone."""
    vocab = lm_head.out_features
    if loss == "hf":
        from transformers.loss.loss_utils import ForCausalLMLoss

        logits = lm_head(hidden)  # kept by the model's output while the loss runs
        return ForCausalLMLoss(logits, labels, vocab)
    logits = lm_head(hidden)
    logits = logits.float()
    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = labels[..., 1:].contiguous()
    return torch.nn.CrossEntropyLoss()(shift_logits.view(-1, vocab), shift_labels.view(-1))


def measure_loss_path(loss: str, vocab: int, tokens: int, sequences: int = 1, hidden: int = 64,
                      seed: int = 0) -> LossPeaks:
    """Run `loss` on `sequences` x `tokens` random bf16 hidden states through a frozen bf16 LM head of
    `vocab` outputs and return its forward and backward peaks. The hidden states require a gradient,
    as the last norm's output does, so the backward runs through the LM head as in training."""
    if loss not in HF_LOSSES:
        raise ValueError(f"loss {loss!r} is not one of {', '.join(HF_LOSSES)}")
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(sequences, tokens, hidden, generator=gen, dtype=torch.bfloat16).requires_grad_()
    lm_head = torch.nn.Linear(hidden, vocab, bias=False, dtype=torch.bfloat16).requires_grad_(False)
    labels = torch.randint(0, vocab, (sequences, tokens), generator=gen)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        value = _model_forward_loss(loss, lm_head, states, labels)
        with record_function(_BACKWARD):
            value.backward()
    events, starts = cpu_allocations(prof, (_BACKWARD,))
    if _BACKWARD not in starts:
        raise RuntimeError("the profiler recorded no backward range")
    backward_start = starts[_BACKWARD]
    forward = max((total for at, total in events if at < backward_start), default=0)
    backward = max((total for at, total in events if at >= backward_start), default=0)
    return LossPeaks(forward_bytes=forward, backward_bytes=backward, tokens=sequences * tokens, vocab=vocab)


def bytes_per_token_and_vocab(loss: str, vocab: int, short: int, long: int, sequences: int = 1) -> tuple[float, float]:
    """(forward, backward) peak bytes per token per vocabulary entry: the slope between two sequence
    lengths, so what does not grow with the tokens (labels, the loss scalar) drops out."""
    a = measure_loss_path(loss, vocab, short, sequences)
    b = measure_loss_path(loss, vocab, long, sequences)
    span = (b.tokens - a.tokens) * vocab
    return (b.forward_bytes - a.forward_bytes) / span, (b.backward_bytes - a.backward_bytes) / span
