"""Constructed records for report and comparison tests: GPU cases that no CPU run can produce."""

from __future__ import annotations

from pathlib import Path

from bench.records.schema import Metric, ModelRef, RunRecord
from bench.records.store import write_record


def gpu_inference(record_id: str, decode: float, peak_gib: float, started: str, model: str = "mistral-3-small",
                  target: str = "rtx-4090", emulated: bool = True, quant: str = "nf4",
                  spread: float | None = None) -> RunRecord:
    """`spread`: give decode ten raw samples evenly within +-spread of `decode` (a rank test needs them)."""
    samples = [decode * (1 + spread * (k - 4.5) / 4.5) for k in range(10)] if spread is not None else None
    return RunRecord(
        schema_version=1, id=record_id, kind="inference", status="ok", error=None,
        model=ModelRef(id=model, repo="mistralai/Mistral-Small-24B-Instruct-2501", revision="main",
                       resolved_revision="0" * 40, weights="real"),
        config={"scenario": {"backend": "vllm", "batch": 8, "prompt_len": 128, "output_len": 64, "context": None,
                             "engine": {"quant": quant}}},
        hardware={"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "target": target, "emulated": emulated,
                  "driver": "580.65", "cuda_runtime": "13.0"},
        software={"torch": "2.13.0", "vllm": "0.32.0", "bench_commit": "f" * 40},
        metrics={"decode_tokens_per_s": Metric(value=decode, unit="tokens/s", samples=samples),
                 "roofline_decode_tokens_per_s": Metric(value=decode * 1.6, unit="tokens/s"),
                 "roofline_fraction": Metric(value=1 / 1.6, unit="ratio"),
                 "peak_memory_bytes": Metric(value=peak_gib * 2**30, unit="bytes")},
        started_at=started, duration_s=60.0)


def write_all(directory: Path, records: list[RunRecord]) -> Path:
    for record in records:
        write_record(record, directory)
    return directory
