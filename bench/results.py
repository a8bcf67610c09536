"""The result record: its schema, atomic never-rewriting writes, and loading into pandas.

One JSON file per run (design section 7). A record is written once, under a unique
id, through a temporary file that is hard-linked into place, so a reader never sees
half a record and an existing record is never replaced. Readers skip a corrupt file
with one warning and go on. A Hugging Face token must never reach a record: writing
refuses any text that contains one.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

SCHEMA_VERSION = 1
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(_Frozen):
    value: float | int | bool | dict[str, Any] | None
    unit: str
    samples: list[float] | None = None  # raw samples, so statistics can be recomputed


class ModelRef(_Frozen):
    id: str
    repo: str | None
    revision: str | None
    resolved_revision: str | None  # the commit the run used
    weights: Literal["real", "synthetic"]
    path: str | None = None


class RunRecord(_Frozen):
    schema_version: int
    id: str
    kind: Literal["inference", "finetune", "eval"]
    status: Literal["ok", "oom", "error", "timeout"]
    error: str | None
    model: ModelRef
    config: dict[str, Any]
    hardware: dict[str, Any]  # observed device, target profile, emulated
    software: dict[str, Any]
    metrics: dict[str, Metric]
    details: dict[str, Any] = {}  # what the engine, trackers and estimator reported beside the metrics
    started_at: str
    duration_s: float
    notes: list[str] = []


def results_dir(explicit: str | Path | None = None) -> Path:
    """`--results-dir`, else `BENCH_RESULTS_DIR`, else ./results."""
    return Path(explicit or os.environ.get("BENCH_RESULTS_DIR") or "results")


def new_record_id(kind: str, model_id: str, started: datetime) -> str:
    safe_model = "".join(c if c.isalnum() or c in "-." else "-" for c in model_id)
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}-{kind}-{safe_model}-{secrets.token_hex(3)}"


def _refuse_tokens(text: str) -> None:
    for name in TOKEN_VARIABLES:
        token = os.environ.get(name, "")
        if len(token) >= 8 and token in text:
            raise ValueError(f"refusing to write a record containing the value of {name}")


def write_record(record: RunRecord, directory: Path) -> Path:
    """Write `<id>.json` atomically; raise FileExistsError rather than replace a record."""
    directory.mkdir(parents=True, exist_ok=True)
    text = record.model_dump_json(indent=2)
    _refuse_tokens(text)
    final = directory / f"{record.id}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{record.id}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, final)  # fails if the name is taken: records are never rewritten
    finally:
        os.unlink(tmp)
    return final


def iter_records(directory: Path) -> Iterator[RunRecord]:
    """Every valid record in `directory`, by name; corrupt files are skipped with a warning."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.json")):
        try:
            yield RunRecord.model_validate(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, ValidationError) as err:
            reason = type(err).__name__
            print(f"warning: skipping {path}: not a valid bench record ({reason})", file=sys.stderr)


def record_row(record: RunRecord) -> dict[str, Any]:
    """The flat view of a record that tables and comparisons use."""
    hw = record.hardware
    row: dict[str, Any] = {
        "id": record.id, "kind": record.kind, "status": record.status, "model": record.model.id,
        "weights": record.model.weights, "engine": (record.details.get("engine") or {}).get("engine"),
        "target": hw.get("target"), "emulated": hw.get("emulated"),
        "device_name": hw.get("device_name") or hw.get("cpu_model"), "started_at": record.started_at,
        "duration_s": record.duration_s,
    }
    for name, metric in record.metrics.items():
        if isinstance(metric.value, (int, float)):
            row[name] = metric.value
    return row


def load_frame(directory: Path):
    """All records of a directory as one pandas frame, one row per record, read once."""
    import pandas as pd

    return pd.DataFrame([record_row(r) for r in iter_records(directory)])
