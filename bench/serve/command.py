"""`bench serve URL|MODEL`: measure a running server, or start one for a registry model and measure that.

Given a URL, bench talks to that host alone. Given a model, bench starts the server on
loopback (llama.cpp's for the GGUF quants, vLLM's otherwise), waits until it serves,
measures each load level, and stops it whatever happened; a server that will not start is a recorded
failure (status `error`, its log's last line), like any failed run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.config.registry import Registry
from bench.errors import UserError
from bench.serve import prompts as prompt_pool
from bench.serve import server as servers
from bench.serve.measure import (
    Endpoint,
    LoadSettings,
    auth_headers,
    discovery_deadline,
    endpoint_url,
    now,
    probe,
    run_levels,
    write_serve_record,
)

DAY_S = 86400.0
MAX_TOKENS = 2**20  # longer prompts or answers than any served context
# Each numeric option: (lowest, highest, whether the lowest itself is allowed).
RANGES = {"--concurrency": (1, 1024, True), "--rate": (0, 1000, False), "--prompt-len": (1, MAX_TOKENS, True),
          "--output-len": (2, MAX_TOKENS, True), "--duration": (0, DAY_S, True), "--min-requests": (1, 10**6, True),
          "--warmup": (0, 10**4, True), "--timeout": (0, DAY_S, False), "--slo-ttft": (0, 3600, False),
          "--slo-itl": (0, 3600, False), "--startup-timeout": (0, DAY_S, False)}


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def serve_url(url: str, settings: LoadSettings, *, served_model: str | None, model_id: str | None,
              tokenizer: str | None, gpu: str | None, api_key_env: str, results_dir: Path):
    """Sweep a server someone else runs; the record's model is `model_id` (a registry id) or the served name."""
    from bench.launch.environment import parent_view_of_hardware

    base = endpoint_url(url)
    headers = auth_headers(api_key_env)
    local = prompt_pool.local_counter(tokenizer) if tokenizer else None
    started, clock = now()
    deadline = discovery_deadline(settings)
    name, version = probe(base, headers, served_model, deadline)
    endpoint = Endpoint(base, headers, name, {**version, "started_by_bench": False},
                        local or prompt_pool.server_counter(base, headers, name, deadline))
    outcome = run_levels(endpoint, settings)
    hardware = {**parent_view_of_hardware("cpu"), "observed": "the client machine (the server's is not visible)",
                "target": gpu, "emulated": False}
    model_ref = {"id": model_id or name, "repo": None, "revision": None, "resolved_revision": None,
                 "weights": "unknown"}
    return write_serve_record(endpoint=endpoint, settings=settings, outcome=outcome, error=None, model_ref=model_ref,
                              hardware=hardware, results_dir=results_dir, started=started,
                              duration_s=_since(clock), api_key_env=api_key_env)


def serve_model(registry: Registry, model_name: str, settings: LoadSettings, *, quant: str, weights: str | None,
                device: str, gpu: str | None, tokenizer: str | None, startup_timeout_s: float,
                api_key_env: str, results_dir: Path, gguf: str | None = None):
    """Start the server for a registry model on loopback, measure its load levels, stop it; one record either way."""
    from bench.backends.capabilities import ENGINE_QUANTS
    from bench.estimate.gguf import GGUF_FTYPES
    from bench.jobs.runner import check_device, cpu_kv_budget, prepare_weights, resolve_model
    from bench.launch.environment import parent_view_of_hardware
    from bench.records.schema import new_record_id

    model = resolve_model(registry, model_name)
    local = prompt_pool.local_counter(tokenizer) if tokenizer else None
    target = registry.gpu(gpu) if gpu else None
    kind = "llama.cpp" if quant in GGUF_FTYPES or gguf else "vllm"
    cap = check_device(device, target, model.id, on_device_budget=kind == "llama.cpp")
    if cap.emulated:
        raise UserError(f"bench serve does not cap a server's memory: run it on the {target.id} itself, or "
                        "measure memory with `bench run`")
    max_len = settings.prompt_len + settings.output_len + 64  # room for a chat template
    if max_len > model.architecture.max_position_embeddings:
        raise UserError(f"{max_len} tokens exceed {model.id}'s maximum of {model.architecture.max_position_embeddings}")
    widest = max(level.concurrency or 1 for level in settings.levels)
    gguf_file = None
    if kind == "llama.cpp":
        from bench.jobs.runner import gguf_weights

        checkout, gguf_file = gguf_weights(model, weights, quant, gguf)
    else:
        if quant not in ENGINE_QUANTS["vllm"]["cuda"]:
            raise UserError(f"vLLM serves {', '.join(ENGINE_QUANTS['vllm']['cuda'])}; {quant} is a bitsandbytes quant "
                            f"(llama.cpp serves the GGUF types {', '.join(GGUF_FTYPES)})")
        checkout = prepare_weights(model, weights, quant)
    port = servers.free_port()
    if kind == "llama.cpp":
        spec = servers.llamacpp_spec(checkout.path, model.id, port, max_len, -1 if device == "cuda" else 0)
    else:
        kv = cpu_kv_budget(model.architecture, max_len, widest) if device == "cpu" else None
        spec = servers.vllm_spec(checkout.path, model.id, port, max_len, max(widest, 1), device,
                                 "float16" if quant == "fp16" else "bfloat16", kv,
                                 bool(model.spec and model.spec.trust_remote_code))
    started, clock = now()
    record_id = new_record_id("serve", model.id, started)
    log_path = Path(results_dir) / f"{record_id}.log"  # the server's terminal, beside its record
    model_ref = {"id": model.id, "repo": checkout.repo, "revision": checkout.revision,
                 "resolved_revision": checkout.resolved_revision, "weights": checkout.kind}
    hardware = {**parent_view_of_hardware(device), "target": target.id if target else None, "emulated": False,
                "observed": "this machine, where bench started the server"}
    endpoint = Endpoint(f"http://{servers.LOOPBACK}:{port}", auth_headers(api_key_env), model.id,
                        {"kind": kind, "started_by_bench": True, "args": spec.args[1:]})
    outcome, error, extra = None, None, {"server_log": log_path.name, "quant": quant}
    if gguf_file is not None:
        extra["gguf_file"] = gguf_file.to_dict()  # a real file's source, revision, bytes and sha256
    deadline = discovery_deadline(settings)
    try:
        with servers.running(spec, log_path, startup_timeout_s, port) as running:
            extra["startup_s"] = running.startup_s
            version = _discover(endpoint, model.id, deadline)
            endpoint.server.update(_reported_or_installed(version, kind))
            endpoint.counter = local or prompt_pool.server_counter(endpoint.base_url, endpoint.headers, model.id,
                                                                   deadline)
            outcome = run_levels(endpoint, settings)
    except servers.ServerFailed as err:
        error = str(err)
    return write_serve_record(endpoint=endpoint, settings=settings, outcome=outcome, error=error,
                              model_ref=model_ref, hardware=hardware, results_dir=results_dir, started=started,
                              duration_s=_since(clock), api_key_env=api_key_env, extra_details=extra,
                              record_id=record_id)


def _reported_or_installed(version: dict[str, Any], kind: str) -> dict[str, Any]:
    """The version the server reports; llama-cpp-python's server reports none, so its package's version."""
    if version.get("kind") == kind:
        return version
    from importlib import metadata

    return {"kind": kind, "version": metadata.version("llama_cpp_python"), "reported_by": "installed package"}


def _discover(endpoint: Endpoint, served_name: str, deadline_s: float) -> dict[str, Any]:
    """The version of a server bench started; one that gives no usable model list failed to start."""
    try:
        return probe(endpoint.base_url, endpoint.headers, served_name, deadline_s)[1]
    except UserError as err:
        raise servers.ServerFailed(f"the server bench started answers no usable model list: {err}") from None


def _since(clock: float) -> float:
    import time

    return time.perf_counter() - clock


def settings_from(levels_c: list[int], levels_r: list[float], **kw: Any) -> LoadSettings:
    from bench.serve.load import Level

    levels = [Level(concurrency=c) for c in levels_c] + [Level(rate=r) for r in levels_r]
    if not levels:
        levels = [Level(concurrency=c) for c in (1, 2, 4, 8)]
    return LoadSettings(levels=levels, **kw)


def run_serve(registry_loader, target: str, concurrency: list[int], rate: list[float], *, api: str, prompt_len: int,
              output_len: int, duration: float, min_requests: int, warmup: int, timeout: float,
              slo: tuple[float, float], served_model: str | None, model_id: str | None, tokenizer: str | None,
              quant: str, weights: str | None, device: str, gpu: str | None, startup_timeout: float,
              api_key_env: str, results_dir: Path, gguf: str | None = None):
    """The command's body: check the input, then measure a URL or a model's server at each load level; returns the written record.

    `registry_loader` is called only when needed: a URL needs no registry unless it names one of its models.
    """
    from bench.serve.summary import Slo

    check_ranges({"--concurrency": concurrency, "--rate": rate, "--prompt-len": [prompt_len],
                  "--output-len": [output_len], "--duration": [duration], "--min-requests": [min_requests],
                  "--warmup": [warmup], "--timeout": [timeout], "--slo-ttft": [slo[0]], "--slo-itl": [slo[1]],
                  "--startup-timeout": [startup_timeout]})
    if len(set(concurrency)) != len(concurrency) or len(set(rate)) != len(rate):
        raise UserError("each --concurrency and --rate value once")
    settings = settings_from(concurrency, rate, api=api, prompt_len=prompt_len, output_len=output_len,
                             min_duration_s=duration, min_requests=min_requests, warmup=warmup, timeout_s=timeout,
                             slo=Slo(*slo))
    if is_url(target):
        if gguf:
            raise UserError("--gguf names the file for a server bench starts; a URL's server has its own")
        registry = registry_loader() if (gpu or model_id) else None
        return serve_url(target, settings, served_model=served_model,
                         model_id=registry.model(model_id).id if model_id else None, tokenizer=tokenizer,
                         gpu=registry.gpu(gpu).id if gpu else None, api_key_env=api_key_env, results_dir=results_dir)
    if served_model or model_id:
        raise UserError("--served-model and --model-id name what a URL serves; a registry model is served by bench")
    return serve_model(registry_loader(), target, settings, quant=quant, weights=weights, device=device, gpu=gpu,
                       tokenizer=tokenizer, startup_timeout_s=startup_timeout, api_key_env=api_key_env,
                       results_dir=results_dir, gguf=gguf)


def check_ranges(values: dict[str, list[float]]) -> None:
    """Each numeric option within its range (``RANGES``): a NaN, an infinity or a negative length would
    otherwise become a sweep that never ends, an empty one, or figures that mean nothing."""
    for option, given in values.items():
        low, high, low_allowed = RANGES[option]
        for value in given:
            if not (math.isfinite(value) and (value >= low if low_allowed else value > low) and value <= high):
                bound = f"at least {low:g}" if low_allowed else f"more than {low:g}"
                raise UserError(f"{option} {value}: must be {bound} and at most {high:g}")
