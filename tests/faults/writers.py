"""Record writers for the storage faults, run as their own processes so that a test can kill them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from bench.records import store
from bench.records.schema import Metric, ModelRef, RunRecord
from bench.records.store import write_record


def record(record_id: str) -> RunRecord:
    return RunRecord(
        schema_version=1, id=record_id, kind="inference", status="ok", error=None,
        model=ModelRef(id="tiny-llama", repo=None, revision=None, resolved_revision=None, weights="synthetic"),
        config={}, hardware={"device": "cpu"}, software={}, metrics={
            "decode_tokens_per_s": Metric(value=10.0, unit="tokens/s")},
        started_at="2026-11-23T00:00:00+00:00", duration_s=1.0)


def write_many(directory: str, writer: int, count: int) -> None:
    for i in range(count):
        write_record(record(f"writer{writer}-{i}"), Path(directory))


def killed_while_writing(directory: str, function: str, call: str, when: str) -> None:
    """Write `older`, then `newer` with SIGKILL at the `call`-th call of os.`function`, before or after it."""
    write_record(record("older"), Path(directory))
    real, calls = getattr(os, function), []

    def step(*args, **kwargs):
        calls.append(1)
        hit = len(calls) == int(call)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        value = real(*args, **kwargs)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return value

    setattr(store.os, function, step)  # bench.records.store uses the os module: patch the step it calls
    write_record(record("newer"), Path(directory))
