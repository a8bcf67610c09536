"""bench serve against guidellm: the same server, model and load, measured by both; their ratios printed.

    python -m venv .guidellm && .guidellm/bin/pip install guidellm==0.8.1   # kept out of bench's venv
    .venv/bin/python scripts/bench_serve_fidelity.py --guidellm .guidellm/bin/guidellm

Starts vLLM's OpenAI server on loopback with a random-weight Llama that bench builds (a trained
tokenizer covering every id, which guidellm needs to build prompts, at a larger shape: 768 wide and 12 layers by
default, so a token costs milliseconds and the figures measure the server, not the two clients'
own overhead; tiny-llama itself streams faster than vLLM's API server relays tokens, which then
arrive merged in bursts), then, for each
concurrency, runs bench's level and guidellm's `concurrent` profile for the same duration
with the same prompt and output lengths (both force the output length with `ignore_eos`),
alternating the two tools for a few rounds, and prints each figure (the median over rounds)
with bench / guidellm and the range of the per-round ratios.

Where the definitions differ (docs/metrics.md, "Serving"):
* TTFT: both from sending the request to the first streamed token; compared at the median.
* ITL: guidellm's is per request, (last token - first token) / (output tokens - 1); bench's ITL is
  the gap between streamed chunks, per chunk (the same quantity when each chunk is one token and
  the pace is steady). bench's TPOT, vLLM's definition (e2e - TTFT) / (output tokens - 1), also
  counts the stream's tail after the last token (the usage chunk and [DONE]): printed beside
  guidellm's ITL to show that tail.
* Throughput: bench divides the output tokens of completed requests by the level's wall time,
  which includes the drain of the last requests; guidellm divides the output tokens of the
  requests completed within its duration by that duration, leaving the requests in flight out
  as incomplete (low by up to one request per stream). The row "guidellm's window" applies
  guidellm's rule to bench's own requests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.config.registry import load_registry
from bench.serve import server as servers
from bench.serve.measure import Endpoint, LoadSettings, run_levels
from bench.serve.load import Level
from bench.serve.prompts import server_counter
from bench.records.stats import median

MODEL = "tiny-llama"


def guidellm_level(guidellm: str, base_url: str, tokenizer_dir: str, concurrency: int, prompt_len: int,
                   output_len: int, duration: float, workdir: Path) -> dict:
    """One guidellm `concurrent` benchmark; its JSON report's benchmark."""
    out = workdir / f"guidellm-c{concurrency}.json"
    scenario = {"spec": {
        "backend": {"kind": "openai_http", "target": base_url, "model": MODEL, "request_format": "/v1/completions"},
        "profile": {"kind": "concurrent", "streams": concurrency},
        "data": [{"kind": "synthetic_text", "prompt_tokens": prompt_len, "output_tokens": output_len}],
        "tokenizer": {"kind": "hf_auto", "model": tokenizer_dir},
        "constraints": [{"kind": "max_duration", "seconds": duration}],
        "outputs": [{"kind": "json", "path": str(out)}]}}
    path = workdir / f"scenario-c{concurrency}.json"
    path.write_text(json.dumps(scenario))
    subprocess.run([guidellm, "run", "-c", str(path), "--disable-console"], check=True, cwd=workdir,
                   env={"HF_HUB_OFFLINE": "1", "PATH": str(Path(guidellm).parent)})
    return json.loads(out.read_text())["benchmarks"][0]


# Every id of the served vocabulary is a token of the tokenizer bench trains for it (tiny-llama's 1024
# ids outnumber its trained tokens, about 517: random weights would then emit ids that decode to no
# text, which guidellm does not count as tokens and bench does, moving TTFT and ITL apart).
SERVED_VOCAB = 512


def served_spec(hidden: int, layers: int):
    """tiny-llama's kind of model at a given width and depth, 4 query heads per KV head, and a vocabulary
    its trained tokenizer covers."""
    spec = load_registry().model(MODEL)
    heads = hidden // 64
    shape = spec.architecture.model_copy(update={
        "vocab_size": SERVED_VOCAB, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": max(heads // 4, 1), "intermediate_size": hidden * 8 // 3 // 64 * 64})
    return spec.model_copy(update={"architecture": shape})


def bench_level(endpoint: Endpoint, concurrency: int, prompt_len: int, output_len: int, duration: float) -> dict:
    settings = LoadSettings(levels=[Level(concurrency=concurrency)], prompt_len=prompt_len, output_len=output_len,
                             min_duration_s=duration, min_requests=1, warmup=2, timeout_s=60.0)
    return run_levels(endpoint, settings)["levels"][0]


FIGURES = ("TTFT p50 (ms)", "ITL p50 (ms)", "TPOT p50 (ms): bench's, guidellm's ITL", "e2e p50 (ms)",
           "output tokens/s", "output tokens/s, guidellm's window", "requests/s")


def windowed_tokens_per_s(level: dict, window_s: float) -> float:
    """guidellm's throughput from bench's own requests: the output tokens of requests that finished within
    the level's first `window_s` seconds, over `window_s` (bench's figure also counts the requests still
    in flight at that moment, and their drain)."""
    done = [r for r in level["requests_detail"] if r.get("e2e_s") is not None and r.get("output_tokens")
            and r["sent_at"] + r["e2e_s"] <= window_s]
    return sum(r["output_tokens"] for r in done) / window_s


def figures(ours: dict, theirs: dict, window_s: float) -> dict[str, tuple[float, float]]:
    """Each compared figure as (bench, guidellm)."""
    m = theirs["metrics"]

    def median(name: str) -> float:
        return m[name]["successful"]["median"]

    def mean(name: str) -> float:
        return m[name]["successful"]["mean"]

    return dict(zip(FIGURES, [
        (ours["ttft_p50_s"] * 1000, median("time_to_first_token_ms")),
        (ours["itl_p50_s"] * 1000, median("inter_token_latency_ms")),
        (ours["tpot_p50_s"] * 1000, median("inter_token_latency_ms")),
        (ours["e2e_p50_s"] * 1000, median("request_latency") * 1000),
        (ours["output_tokens_per_s"], mean("output_tokens_per_second")),
        (windowed_tokens_per_s(ours, window_s), mean("output_tokens_per_second")),
        (ours["requests_per_s"], mean("requests_per_second"))]))


def rows(concurrency: int, rounds: list[dict[str, tuple[float, float]]]) -> list[list]:
    """The median over rounds of each tool's figure, their ratio, and the spread of the per-round ratios."""
    out = []
    for name in FIGURES:
        ours, theirs = median([r[name][0] for r in rounds]), median([r[name][1] for r in rounds])
        ratios = [r[name][0] / r[name][1] for r in rounds]
        out.append([f"c{concurrency}", name, f"{ours:,.2f}", f"{theirs:,.2f}", f"{ours / theirs:.3f}",
                    f"{min(ratios):.3f}-{max(ratios):.3f}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--guidellm", default="guidellm", help="guidellm's command, from its own environment")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level and round, for each tool")
    parser.add_argument("--rounds", type=int, default=3, help="bench and guidellm alternated this many times")
    parser.add_argument("--hidden", type=int, default=768, help="the served model's width (heads of 64)")
    parser.add_argument("--layers", type=int, default=12, help="the served model's depth")
    args = parser.parse_args()

    from bench.report import terminal
    from bench.weights import synthetic_hf
    from bench.jobs.runner import cpu_kv_budget

    spec = served_spec(args.hidden, args.layers)
    model_dir = str(synthetic_hf.build(spec, with_weights=True))
    from transformers import AutoTokenizer

    if len(AutoTokenizer.from_pretrained(model_dir)) < SERVED_VOCAB:
        raise SystemExit(f"the served tokenizer covers fewer than {SERVED_VOCAB} ids")
    max_len = args.prompt_len + args.output_len + 64
    port = servers.free_port()
    launch = servers.vllm_spec(model_dir, MODEL, port, max_len, max(args.concurrency), "cpu", "bfloat16",
                               cpu_kv_budget(spec.architecture, max_len, max(args.concurrency)), False)
    table = []
    with tempfile.TemporaryDirectory() as tmp, servers.running(launch, Path(tmp) / "server.log", 600, port) as server:
        import httpx

        counter = server_counter(httpx.Client(base_url=server.base_url, timeout=30.0), MODEL)
        endpoint = Endpoint(server.base_url, {}, MODEL, {"kind": "vllm"}, counter)
        for c in args.concurrency:
            rounds = []
            for _ in range(args.rounds):  # alternated, so a neighbour's load on the machine falls on both
                ours = bench_level(endpoint, c, args.prompt_len, args.output_len, args.duration)
                theirs = guidellm_level(args.guidellm, server.base_url, model_dir, c, args.prompt_len,
                                        args.output_len, args.duration, Path(tmp))
                rounds.append(figures(ours, theirs, args.duration))
            table += rows(c, rounds)
    print(f"vLLM, {MODEL}'s tokenizer at {args.hidden} wide x {args.layers} layers, on {servers.LOOPBACK}, "
          f"prompt {args.prompt_len} -> output {args.output_len} tokens, "
          f"{args.rounds} rounds of {args.duration:g} s per level and tool")
    print(terminal.table(["level", "figure", "bench", "guidellm", "bench / guidellm", "per-round ratios"], table))


if __name__ == "__main__":
    sys.exit(main())
