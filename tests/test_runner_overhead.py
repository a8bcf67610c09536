"""The local-runner CUDA overhead is computed from published pairs (runner buffers vs nvidia-smi), per runner
(issue 23, finding 8)."""

from __future__ import annotations

import pytest

from bench.verdicts.evidence import RUNNER_CUDA_OVERHEAD_BYTES, RUNNER_CUDA_PAIRS, runner_cuda_overhead_bytes

MiB = 2**20


def test_the_overhead_is_the_published_gap_rounded_up():
    (runner, source, buffers, smi), = [p for p in RUNNER_CUDA_PAIRS if p[0] == "ollama"]
    assert "ollama/ollama/issues/6160" in source
    assert smi - sum(buffers) == pytest.approx(308.6)  # 23508 - (17295.40 + 5712.00 + 192.00) MiB
    assert RUNNER_CUDA_OVERHEAD_BYTES["ollama"] == 320 * MiB
    assert RUNNER_CUDA_OVERHEAD_BYTES["llama.cpp"] == RUNNER_CUDA_OVERHEAD_BYTES["ollama"]  # one ggml CUDA backend


def test_the_overhead_is_per_card_and_none_on_an_edge_budget(registry):
    assert runner_cuda_overhead_bytes("ollama", registry.gpu("rtx-4090")) == 320 * MiB
    assert runner_cuda_overhead_bytes("llama.cpp", registry.gpu("2x-a100-80gb")) == 2 * 320 * MiB
    assert runner_cuda_overhead_bytes("ollama", registry.gpu("edge-4gb")) == 0
    assert runner_cuda_overhead_bytes("lmstudio", registry.gpu("rtx-4090")) is None
