"""The result record: its schema, atomic never-rewriting writes, and loading into pandas.

One JSON file per run (design section 7). A record is written once, under a unique
id, through a temporary file that is hard-linked into place, so a reader never sees
half a record and an existing record is never replaced. Readers skip a corrupt file
with one warning and go on. A Hugging Face token must never reach a record: writing
refuses any text that contains one (from the environment or `huggingface-cli login`'s file).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

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
    weights: Literal["real", "synthetic", "unknown"]  # unknown: a server someone else runs (`bench serve URL`)
    path: str | None = None


class RunRecord(_Frozen):
    schema_version: int
    id: str
    kind: Literal["inference", "finetune", "eval", "serve"]
    status: Literal["ok", "oom", "error", "timeout"]
    error: str | None
    model: ModelRef
    config: dict[str, Any]
    hardware: dict[str, Any]  # observed device, target profile, emulated
    software: dict[str, Any]
    metrics: dict[str, Metric]
    details: dict[str, Any] = {}  # what the engine, trackers and estimator reported beside the metrics
    started_at: str  # ISO 8601 in UTC
    duration_s: float
    notes: list[str] = []

    @field_validator("started_at")
    @classmethod
    def _iso_utc(cls, value: str) -> str:
        if datetime.fromisoformat(value).utcoffset() != timedelta(0):
            raise ValueError("must be ISO 8601 in UTC, such as 2026-11-23T14:45:01+00:00")
        return value


def results_dir(explicit: str | Path | None = None) -> Path:
    """`--results-dir`, else `BENCH_RESULTS_DIR`, else ./results."""
    return Path(explicit or os.environ.get("BENCH_RESULTS_DIR") or "results")


def new_record_id(kind: str, model_id: str, started: datetime) -> str:
    """``20261123T144501Z-inference-tiny-llama-3f2a1b``: sorts by start time (UTC), safe as a file name."""
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")  # a naive time is taken as local
    safe_model = "".join(c if c.isalnum() or c in "-." else "-" for c in model_id)
    return f"{stamp}-{kind}-{safe_model}-{secrets.token_hex(3)}"


def _known_tokens() -> dict[str, str]:
    """Where each Hugging Face token this process could use came from -> the token."""
    tokens = {name: os.environ.get(name, "") for name in TOKEN_VARIABLES}
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    stored = Path(os.environ.get("HF_TOKEN_PATH") or Path(os.environ.get("HF_HOME") or cache / "huggingface") / "token")
    with contextlib.suppress(OSError, UnicodeDecodeError):  # no stored token: nothing to guard against
        tokens[str(stored)] = stored.read_text().strip()
    return tokens


def _refuse_tokens(text: str) -> None:
    for source, token in _known_tokens().items():
        if len(token) >= 8 and token in text:
            raise ValueError(f"refusing to write a record containing the Hugging Face token from {source}")


def write_record(record: RunRecord, directory: Path) -> Path:
    """Write `<id>.json` atomically; raise FileExistsError rather than replace a record."""
    directory.mkdir(parents=True, exist_ok=True)
    text = record.model_dump_json(indent=2)
    _refuse_tokens(text)
    final = directory / f"{record.id}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{record.id}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide records from the rest of the team
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, final)  # fails if the name is taken: records are never rewritten
    finally:
        os.unlink(tmp)
    _fsync_dir(directory)  # so the new name survives a power cut too
    return final


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_records(directory: Path) -> Iterator[RunRecord]:
    """Every valid record in `directory` and its subfolders (the published results/gpu/, results/cpu/),
    by path; corrupt files are skipped with a warning."""
    if not directory.is_dir():
        return
    for path in sorted(directory.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue  # a write in progress, or an editor's or a file system's litter
        try:
            record = RunRecord.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, bad UTF-8, invalid
            print(f"warning: skipping {path}: not a valid bench record ({_reason(err)})", file=sys.stderr)
            continue
        yield record


def _reason(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        more = f" and {err.error_count() - 1} more" if err.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON: {err.msg} at line {err.lineno}"
    return f"{type(err).__name__}: {err}"


FRAME_COLUMNS = ("id", "kind", "status", "model", "weights", "engine", "target", "emulated", "device_name",
                 "started_at", "duration_s")


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
        if isinstance(metric.value, (int, float)) and name not in row:  # numbers and flags; never a base column
            row[name] = metric.value
    return row


def load_frame(directory: Path):
    """All records of a directory as one pandas frame, one row per record, read once."""
    import pandas as pd

    rows = [record_row(r) for r in iter_records(directory)]
    return pd.DataFrame(rows, columns=None if rows else list(FRAME_COLUMNS))
