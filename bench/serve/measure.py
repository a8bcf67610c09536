"""A `bench serve` measurement: the endpoint (given, or a server bench starts), warm-up, levels, one record.

The record (kind `serve`) names the endpoint without credentials: an API key is read from
the environment variable the user names, sent as a bearer token, and never written (the
record is checked for it before writing). Each level's figures become flat metrics
(`ttft_p90_s@c4`, see `bench.serve.summary`); its raw samples and every request's timings
are kept in `details.levels`. A measurement where some requests failed is still a measurement
(the failures are counted); the record's status is `error` only when no request completed.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.errors import UserError
from bench.serve import prompts as prompt_pool
from bench.serve.load import Level, LoadShape, run_level, warm_up
from bench.serve.summary import LEVEL_METRICS, Slo, metric_name, summarize


@dataclass(frozen=True)
class LoadSettings:
    levels: list[Level]
    api: str = "completions"
    prompt_len: int = 128
    output_len: int = 64
    min_duration_s: float = 10.0
    min_requests: int = 8
    warmup: int = 2
    timeout_s: float = 60.0
    slo: Slo = field(default_factory=Slo)
    force_length: bool = True
    seed: int = 0


@dataclass
class Endpoint:
    base_url: str  # scheme://host:port, no credentials, no path
    headers: dict[str, str]
    served_name: str
    server: dict[str, Any]  # kind, version as reported and where from, started_by_bench
    counter: Any = None  # token counter for prompts, or None


def endpoint_url(url: str) -> str:
    """`url` reduced to scheme://host[:port]; a URL holding credentials is refused (keys go in the environment)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise UserError("the URL holds credentials: put the API key in the environment (--api-key-env) instead")
    path = parts.path.rstrip("/")
    if path not in ("", "/v1"):
        raise UserError(f"give the server's root URL (such as http://127.0.0.1:8000), not {path!r}")
    return f"{parts.scheme}://{parts.netloc}"


def auth_headers(api_key_env: str) -> dict[str, str]:
    key = os.environ.get(api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def probe(base_url: str, headers: dict[str, str], served_name: str | None) -> tuple[str, dict[str, Any]]:
    """The served model's name (the only one, or the one asked for) and the server's version as it reports it."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as client:
        try:
            answer = client.get("/v1/models")
        except httpx.HTTPError as err:
            raise UserError(f"{base_url}: no OpenAI-compatible server answers ({type(err).__name__})") from None
        if answer.status_code != 200:
            raise UserError(f"{base_url}/v1/models answered HTTP {answer.status_code}")
        names = [m.get("id") for m in answer.json().get("data", [])]
        if served_name is None:
            if len(names) != 1:
                raise UserError(f"{base_url} serves {len(names)} models ({', '.join(map(str, names))}): "
                                "name one with --served-model")
            served_name = names[0]
        elif served_name not in names:
            raise UserError(f"{base_url} does not serve {served_name!r}; it serves {', '.join(map(str, names))}")
        return served_name, _version(client, answer)


def _version(client: httpx.Client, models_answer: httpx.Response) -> dict[str, Any]:
    probes = (("/version", "version", "vllm"), ("/api/version", "version", "ollama"),
              ("/props", "build_info", "llama.cpp"))
    for path, key, kind in probes:
        try:
            answer = client.get(path)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200 and "json" in answer.headers.get("content-type", ""):
            value = answer.json().get(key)
            if value:
                return {"kind": kind, "version": str(value), "reported_by": path}
    return {"kind": None, "version": models_answer.headers.get("server"), "reported_by": "Server header"}


def run_levels(endpoint: Endpoint, settings: LoadSettings) -> dict[str, Any]:
    """Warm-up, then each level in turn; returns the per-level summaries and the warm-up's requests."""
    pool = prompt_pool.build(settings.prompt_len, endpoint.counter, settings.seed)
    shape = LoadShape(api=settings.api, model=endpoint.served_name, prompts=pool, output_len=settings.output_len,
                      force_length=settings.force_length, min_duration_s=settings.min_duration_s,
                      min_requests=settings.min_requests, timeout_s=settings.timeout_s, seed=settings.seed)
    warm = asyncio.run(warm_up(endpoint.base_url, endpoint.headers, shape, settings.warmup))
    levels = []
    for level in settings.levels:
        run = asyncio.run(run_level(endpoint.base_url, endpoint.headers, shape, level))
        summary = summarize(run, settings.slo)
        summary["requests_detail"] = [r.to_dict() for r in run.requests]
        levels.append(summary)
    return {"warmup": [r.to_dict() for r in warm], "levels": levels,
            "prompt_tokens_counted_by": "tokenizer" if endpoint.counter else "usage"}


def level_metrics(levels: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each level's figures as flat record metrics, latencies with their raw samples."""
    metrics: dict[str, dict[str, Any]] = {}
    for level in levels:
        for name, unit in LEVEL_METRICS.items():
            if level.get(name) is None:
                continue
            samples = level["samples"].get(name.split("_p")[0]) if name.endswith("_p50_s") else None
            metrics[metric_name(name, level["level"])] = {"value": level[name], "unit": unit, "samples": samples}
    return metrics


def write_serve_record(*, endpoint: Endpoint, settings: LoadSettings, outcome: dict[str, Any] | None,
                       error: str | None, model_ref: dict[str, Any], hardware: dict[str, Any],
                       results_dir: Path, started: datetime, duration_s: float, api_key_env: str,
                       extra_details: dict[str, Any] | None = None, record_id: str | None = None):
    """Write the measurement's record; refuses to write one that contains the API key."""
    from bench.launch.environment import software_versions
    from bench.records.schema import new_record
    from bench.records.store import write_record

    levels = (outcome or {}).get("levels", [])
    completed = sum(level["completed"] for level in levels)
    if error is None and not completed:
        error = "no request completed: " + "; ".join(
            f"{level['level']}: {level['errors_by_kind']}" for level in levels) if levels else "no level ran"
    config = {"scenario": {"backend": endpoint.server.get("kind") or "openai-compatible", "api": settings.api,
                           "prompt_len": settings.prompt_len, "output_len": settings.output_len,
                           "levels": [level.label for level in settings.levels],
                           "min_duration_s": settings.min_duration_s, "min_requests": settings.min_requests,
                           "warmup": settings.warmup, "timeout_s": settings.timeout_s,
                           "slo": asdict(settings.slo), "force_length": settings.force_length,
                           "seed": settings.seed},
              "endpoint": endpoint.base_url, "served_model": endpoint.served_name,
              "api_key_env": api_key_env if api_key_env in os.environ else None}
    record = new_record(
        record_id=record_id, kind="serve",
        status="error" if error else "ok", error=error, model=model_ref, config=config,
        hardware=hardware, software=software_versions(),
        metrics=level_metrics(levels),  # latencies keep their raw samples here, once
        details={"engine": {"engine": endpoint.server.get("kind"), **endpoint.server},
                 **(outcome or {}), "levels": [{k: v for k, v in level.items() if k != "samples"} for level in levels],
                 **(extra_details or {})},
        started=started, duration_s=duration_s,
        notes=_notes(levels))
    key = os.environ.get(api_key_env, "")
    if len(key) >= 8 and key in record.model_dump_json():
        raise ValueError(f"refusing to write a record containing the API key from ${api_key_env}")
    write_record(record, results_dir)
    return record


def _notes(levels: list[dict[str, Any]]) -> list[str]:
    notes = []
    for level in levels:
        if level["errors"]:
            notes.append(f"{level['level']}: {level['errors']} of {level['requests']} requests failed "
                         f"({level['errors_by_kind']})")
        if level["output_tokens_unknown"]:
            notes.append(f"{level['level']}: {level['output_tokens_unknown']} completed requests reported no "
                         "token count (no usage, stopped before max_tokens): left out of the throughputs")
    return notes


def now() -> tuple[datetime, float]:
    return datetime.now(timezone.utc), time.perf_counter()
