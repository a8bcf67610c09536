"""The result record's schema (design section 7) and the one constructor every writer uses.

A record's id names its file and the copies a report makes of it, so an id is a plain file
name (`RECORD_ID`); `new_record` stamps the schema version and derives the id, so no writer
(a run, a serve sweep, a sweep's refused cell) restates either.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

SCHEMA_VERSION = 1
# A plain file name: letters, digits, dot, dash, underscore; not starting with a dot (hidden, `..`).
RECORD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


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
    kind: Literal["inference", "finetune", "eval", "serve", "trace"]  # trace: fake tensors (bench trace)
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

    @field_validator("id")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if not RECORD_ID.fullmatch(value):
            raise ValueError("must be a plain file name (letters, digits, '.', '-', '_'; not starting with '.')")
        return value

    @field_validator("started_at")
    @classmethod
    def _iso_utc(cls, value: str) -> str:
        if datetime.fromisoformat(value).utcoffset() != timedelta(0):
            raise ValueError("must be ISO 8601 in UTC, such as 2026-11-23T14:45:01+00:00")
        return value


# At most this many characters of the model's name go into an id (the rest of the 200 is stamp, kind, hashes).
ID_MODEL_CHARS = 96


def new_record_id(kind: str, model_id: str, started: datetime) -> str:
    """``20261123T144501Z-inference-tiny-llama-3f2a1b``: sorts by start time (UTC), safe as a file name.

    The model's name is kept in ASCII letters, digits, '-' and '.' (other ASCII becomes '-') and cut to
    ``ID_MODEL_CHARS``; where a character outside ASCII was replaced or the name was cut, a short hash of
    the whole name follows it, so ``modèle-日本`` and ``modèle-中国`` do not share an id's name part.
    """
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")  # a naive time is taken as local
    safe_model = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "-" for c in model_id)
    if not model_id.isascii() or len(safe_model) > ID_MODEL_CHARS:
        digest = hashlib.sha256(model_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe_model = f"{safe_model[:ID_MODEL_CHARS]}-{digest}"
    return f"{stamp}-{kind}-{safe_model}-{secrets.token_hex(3)}"


def new_record(*, kind: str, status: str, error: str | None, model: ModelRef | dict[str, Any],
               config: dict[str, Any], hardware: dict[str, Any], software: dict[str, Any],
               metrics: dict[str, Any], details: dict[str, Any], started: datetime, duration_s: float,
               notes: Iterable[str] = (), record_id: str | None = None) -> RunRecord:
    """A record of the current schema, its id derived from kind, model and start unless one was reserved."""
    model_ref = model if isinstance(model, ModelRef) else ModelRef(**model)
    return RunRecord(schema_version=SCHEMA_VERSION, id=record_id or new_record_id(kind, model_ref.id, started),
                     kind=kind, status=status, error=error, model=model_ref, config=config, hardware=hardware,
                     software=software, metrics=metrics, details=details, started_at=started.isoformat(),
                     duration_s=duration_s, notes=list(notes))
