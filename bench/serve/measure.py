"""A `bench serve` measurement: the endpoint (given, or a server bench starts), warm-up, levels, one record.

The record (kind `serve`) names the endpoint without credentials: an API key is read from
the environment variable the user names, sent as a bearer token, and never written: a text
from the server that holds it (or a Hugging Face token), as is, JSON-escaped or URL-encoded,
is withheld from the record, and the store refuses a record that still holds one. Each level's
figures become flat metrics
(`ttft_p90_s@c4`, see `bench.serve.summary`); its raw samples and every request's timings
are kept in `details.levels`. A measurement where some requests failed is still a measurement
(the failures are counted); the record's status is `error` only when no request completed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.errors import UserError
from bench.serve import prompts as prompt_pool
from bench.serve.load import Level, LoadShape, run_level, warm_up
from bench.serve.summary import LEVEL_METRICS, Slo, metric_name, summarize
from bench.serve.wire import DISCOVERY_DEADLINE_S, NAME_CHARS, BadAnswer, call, shown, text

# A DNS name's label: letters, digits, '-' and '_', not starting or ending with '-'.
HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Stands in the record for a server's text that held a secret.
WITHHELD = "[withheld: held a secret]"


class RecordRefused(UserError):
    """The measurement ran but its record would hold a secret, so it was not written: the run failed."""

    exit_code = 1


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
    """`url` reduced to scheme://host[:port]; a URL holding credentials is refused (keys go in the environment),
    and so is one whose host is neither a host name nor an IP address, or whose port is no port."""
    try:
        parts = urlsplit(url)
    except ValueError as err:  # an unclosed IPv6 bracket
        raise UserError(f"{url!r} is not a URL ({err})") from None
    if parts.username is not None or parts.password is not None:
        raise UserError("the URL holds credentials: put the API key in the environment (--api-key-env) instead")
    if parts.query or parts.fragment:
        raise UserError("give the server's root URL (such as http://127.0.0.1:8000), without a query")
    try:
        port = parts.port
    except ValueError as err:  # a port that is no number, or out of range
        raise UserError(f"{url!r} is not a URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{url!r} is not an http(s) URL")
    host = _host(parts.hostname)
    if port == 0:
        raise UserError(f"{url!r}: port 0 is no server's port")
    path = parts.path.rstrip("/")
    if path not in ("", "/v1"):
        raise UserError(f"give the server's root URL (such as http://127.0.0.1:8000), not {path!r}")
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _host(hostname: str) -> str:
    """The host as a URL writes it: an IP address (IPv6 in brackets) or a DNS name in ASCII."""
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        labels = hostname.removesuffix(".").split(".")
        if len(hostname) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
            raise UserError(f"{hostname!r} is neither a host name (ASCII letters, digits, '-', '.') nor an IP "
                            "address") from None
        return hostname
    return f"[{address}]" if address.version == 6 else str(address)


def auth_headers(api_key_env: str) -> dict[str, str]:
    """The bearer header for the key in `api_key_env`, if set; a key an HTTP header cannot carry as is
    (not printable ASCII, or holding a space) is bad input, said without the key."""
    key = os.environ.get(api_key_env)
    if not key:
        return {}
    if not all("!" <= c <= "~" for c in key):
        raise UserError(f"the API key in ${api_key_env} holds a space or a character that is not printable "
                        "ASCII: an HTTP header cannot carry it")
    return {"Authorization": f"Bearer {key}"}


def api_key_secret(api_key_env: str) -> dict[str, str]:
    """The API key as a secret no record may hold, named by its variable."""
    return {f"the API key from ${api_key_env}": os.environ.get(api_key_env, "")}


def discovery_deadline(settings: LoadSettings) -> float:
    """Each discovery call's deadline: a request's timeout, at most ``DISCOVERY_DEADLINE_S``."""
    return min(settings.timeout_s, DISCOVERY_DEADLINE_S)


def probe(base_url: str, headers: dict[str, str], served_name: str | None,
          deadline_s: float = DISCOVERY_DEADLINE_S) -> tuple[str, dict[str, Any]]:
    """The served model's name (the only one, or the one asked for) and the server's version as it reports it;
    a server that gives no usable model list within `deadline_s` is one line."""
    try:
        answer = call(base_url, headers, "GET", "/v1/models", deadline_s=deadline_s)
    except BadAnswer as err:
        if err.kind in ("refused", "cut", "error"):
            raise UserError(f"{base_url}: no OpenAI-compatible server answers ({err.detail})") from None
        raise UserError(f"{base_url}/v1/models gave no usable answer ({err})") from None
    if answer.status != 200:
        raise UserError(f"{base_url}/v1/models answered HTTP {answer.status}")
    names = _model_names(base_url, answer.value)
    usable = [name for name in names if _usable_name(name)]
    listed = ", ".join(shown(name) for name in names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    if served_name is None:
        if len(names) != 1:
            raise UserError(f"{base_url} serves {len(names)} models ({listed}): name one with --served-model")
        if not usable:
            raise UserError(f"{base_url}/v1/models names its model {listed}: not a name a request can carry")
        served_name = usable[0]
    elif served_name not in usable:
        raise UserError(f"{base_url} does not serve {served_name!r}; it serves {listed}")
    return served_name, _version(base_url, headers, answer.server, deadline_s)


def _model_names(base_url: str, answer: Any) -> list[Any]:
    """The `id` of each entry of a model list (whatever its type); an answer that is no model list is one line."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise UserError(f"{base_url}/v1/models answered {shown(answer)}, not a model list")
    return [entry.get("id") if isinstance(entry, dict) else entry for entry in data]


def _usable_name(name: Any) -> bool:
    """A name bench can send back in each request and keep in its record as is: a non-empty string of at most
    ``NAME_CHARS`` printable characters (a lone surrogate cannot even be encoded into a request)."""
    return isinstance(name, str) and 0 < len(name) <= NAME_CHARS and text(name, NAME_CHARS) == name


def _version(base_url: str, headers: dict[str, str], server_header: str, deadline_s: float) -> dict[str, Any]:
    """The version the server reports, from the first of its kind's endpoints that answers with one; a
    probe that times out ends the search, so a slow server costs one deadline, not three."""
    probes = (("/version", "version", "vllm"), ("/api/version", "version", "ollama"),
              ("/props", "build_info", "llama.cpp"))
    for path, key, kind in probes:
        try:
            answer = call(base_url, headers, "GET", path, deadline_s=deadline_s)
        except BadAnswer as err:
            if err.kind == "timeout":
                break
            continue
        value = answer.value.get(key) if isinstance(answer.value, dict) else None
        if answer.status == 200 and "json" in answer.content_type and _scalar(value):
            return {"kind": kind, "version": text(value, 80), "reported_by": path}
    return {"kind": None, "version": server_header or None, "reported_by": "Server header"}


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""


def run_levels(endpoint: Endpoint, settings: LoadSettings) -> dict[str, Any]:
    """Warm-up, then each level in turn; returns the per-level summaries and the warm-up's requests."""
    pool, counted = _prompt_pool(endpoint, settings)
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
    return {"warmup": [r.to_dict() for r in warm], "levels": levels, **counted}


def _prompt_pool(endpoint: Endpoint, settings: LoadSettings) -> tuple[list[tuple[str, int | None]], dict[str, Any]]:
    """The prompts, counted by the tokenizer; when the server's tokenize endpoint stops answering with counts
    part-way, by words (their tokens then come from usage) and the record says why, rather than no sweep."""
    try:
        pool = prompt_pool.build(settings.prompt_len, endpoint.counter, settings.seed)
    except BadAnswer as err:
        pool = prompt_pool.build(settings.prompt_len, None, settings.seed)
        return pool, {"prompt_tokens_counted_by": "usage", "tokenizer_failed": str(err)}
    return pool, {"prompt_tokens_counted_by": "tokenizer" if endpoint.counter else "usage"}


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
    """Write the measurement's record, with any text that holds a secret withheld; a full or read-only results
    folder sends it to the fallback place, and a record that would still hold a secret is one line, exit 1."""
    from bench.launch.environment import software_versions
    from bench.records.schema import new_record
    from bench.records.store import SecretInRecord, secrets_to_refuse, write_record_or_fallback

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
    details = {"engine": {"engine": endpoint.server.get("kind"), **endpoint.server},
               **(outcome or {}), "levels": [{k: v for k, v in level.items() if k != "samples"} for level in levels],
               **(extra_details or {})}
    secrets = secrets_to_refuse(api_key_secret(api_key_env))
    parts, withheld = _withhold({"model": model_ref, "config": config, "details": details, "error": error,
                                 "notes": _notes(levels, outcome or {})}, secrets)
    if withheld:
        parts["notes"].append(f"{withheld} of the server's texts held a secret (the API key or a Hugging Face "
                              f"token) and are recorded as {WITHHELD!r}")
    record = new_record(
        record_id=record_id, kind="serve",
        status="error" if parts["error"] else "ok", error=parts["error"], model=parts["model"],
        config=parts["config"], hardware=hardware, software=software_versions(),
        metrics=level_metrics(levels),  # latencies keep their raw samples here, once
        details=parts["details"], started=started, duration_s=duration_s, notes=parts["notes"])
    try:
        write_record_or_fallback(record, results_dir, secrets)
    except SecretInRecord as err:
        raise RecordRefused(f"{err}, outside the server's texts; the measurement was not written") from None
    return record


def _withhold(value: Any, secrets: dict[str, str]) -> tuple[Any, int]:
    """`value` with each string that holds one of `secrets` (in any form the store looks for) replaced by
    ``WITHHELD``, and how many were; a server that echoes the API key still gets its sweep recorded. Each
    string is looked at as is: a secret the server escaped once would be escaped twice in the record's
    text, past the store's own check."""
    from bench.records.store import secret_in

    if isinstance(value, str):
        return (WITHHELD, 1) if secrets and secret_in(value, secrets) else (value, 0)
    if isinstance(value, dict):
        pairs = {key: _withhold(item, secrets) for key, item in value.items()}
        return {key: kept for key, (kept, _) in pairs.items()}, sum(n for _, n in pairs.values())
    if isinstance(value, list):
        items = [_withhold(item, secrets) for item in value]
        return [kept for kept, _ in items], sum(n for _, n in items)
    return value, 0  # a number or a flag: the store's own check refuses it if it is the secret


def _notes(levels: list[dict[str, Any]], outcome: dict[str, Any]) -> list[str]:
    notes = []
    if outcome.get("tokenizer_failed"):
        notes.append(f"the server's tokenize endpoint failed while the prompts were built "
                     f"({outcome['tokenizer_failed']}): prompts are words, their tokens counted by usage")
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
