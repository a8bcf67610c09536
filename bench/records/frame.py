"""Records as a pandas frame: the flat row that `bench results` and comparisons read."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.records.schema import RunRecord
from bench.records.store import iter_records

FRAME_COLUMNS = ("id", "kind", "status", "model", "weights", "engine", "target", "emulated", "device",
                 "device_name", "started_at", "duration_s")


def record_row(record: RunRecord) -> dict[str, Any]:
    """The flat view of a record that tables and comparisons use."""
    hw = record.hardware
    row: dict[str, Any] = {
        "id": record.id, "kind": record.kind, "status": record.status, "model": record.model.id,
        "weights": record.model.weights, "engine": (record.details.get("engine") or {}).get("engine"),
        "target": hw.get("target"), "emulated": hw.get("emulated"), "device": hw.get("device"),
        "device_name": hw.get("device_name") or hw.get("cpu_model"), "started_at": record.started_at,
        "duration_s": record.duration_s,
    }
    for name, metric in record.metrics.items():
        if isinstance(metric.value, (int, float)) and name not in row:  # numbers and flags; never a base column
            row[name] = metric.value
    return row


def load_frame(directory: Path):
    """All records of a directory as one pandas frame, one row per record, read once."""
    return records_frame(iter_records(directory))


def records_frame(records: Iterable[RunRecord]):
    """Records already read as one pandas frame, one row per record."""
    import pandas as pd

    rows = [record_row(r) for r in records]
    return pd.DataFrame(rows, columns=None if rows else list(FRAME_COLUMNS))
