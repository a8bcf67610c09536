"""The ``bench`` command line: parses, delegates, prints.

Commands here need no model, so this module imports neither torch, transformers
nor vllm (a test checks it). Bad input raises :class:`bench.errors.UserError`,
which :func:`main` turns into one line on stderr and exit code 2; set
``BENCH_DEBUG=1`` to see the traceback instead.
"""

import atexit
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.backends.capabilities import ENGINE_QUANTS
from bench.errors import UserError
from bench.launch.progress import session
from bench.report import terminal

app = typer.Typer(
    help="Check claims about open-weight LLMs against arithmetic and measurement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# click's UsageError, from the copy of click that typer carries: every bad-argument error derives from it.
_UsageError = typer.BadParameter.__base__
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT; click returns it for a KeyboardInterrupt

_VLLM, _HF, _GGUF = (", ".join(ENGINE_QUANTS[engine]["cuda"]) for engine in ("vllm", "transformers", "llama.cpp"))
_RUN_QUANT_HELP = (f"{_VLLM} on vLLM (int4 from an AWQ/GPTQ repository); {_HF} on transformers (nf4 and int8 "
                   f"through bitsandbytes); the GGUF types {_GGUF} on llama.cpp.")
_SERVE_QUANT_HELP = f"MODEL: {_VLLM} (vLLM) or a GGUF type (llama.cpp: {_GGUF})."

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]
GpuOpt = Annotated[Optional[str], typer.Option("--gpu", help=(
    "The card the claim is about, an id or alias of `bench gpus`. On a larger card the run is capped to its memory "
    "(emulated: the record says so, and speed stays the real card's); on --device cpu only a llama.cpp run names "
    "one, an edge budget. Default: none, no cap."))]
PlanGpuOpt = Annotated[Optional[str], typer.Option("--gpu", help=(
    "A card id or alias of `bench gpus`, to check the fit and speed on. Default: none; the plan lists every card "
    "it fits on."))]
# The recipes of configs/finetune/ (a test holds this list to the registry).
RECIPES = "dpo, full-sft, lora-sft, qlora-sft, reward"
ResultsDirOpt = Annotated[Optional[Path], typer.Option(
    "--results-dir", help="Where records go (default: $BENCH_RESULTS_DIR, else ./results).")]
DeviceOpt = Annotated[str, typer.Option(help="cuda, or cpu (tiny models, llama.cpp, the demo, the tests).")]
WeightsOpt = Annotated[Optional[str], typer.Option(
    help="real (from the hub at the registry's revision) or synthetic (random weights of the real architecture). "
         "Default: synthetic for the tiny models bench builds, real for the rest.")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", help="Also stream the engine's log to the terminal (it always goes to the log beside the record).")]
TimeoutOpt = Annotated[Optional[float], typer.Option(
    min=0.001, help="Seconds before the run is killed and recorded as a timeout. Default: 1800 for run, 3600 for "
                    "finetune, 7200 for eval on cuda; 900 on cpu.")]


def _registry():
    from bench.config.registry import load_registry

    return load_registry()


@app.command()
def models(json_out: JsonOpt = False) -> None:
    """List the models of the registry with their parameter counts."""
    from bench.estimate.plan import Subject

    registry = _registry()
    rows = []
    for spec in registry.models.values():
        counts = Subject.from_spec(spec).params
        rows.append({"id": spec.id, "display_name": spec.display_name, "repo": spec.repo,
                     "revision": spec.revision, "license": spec.license, "gated": spec.gated,
                     "open_weights": spec.open_weights, "synthetic": spec.synthetic, "proxy": spec.proxy,
                     "params_total": counts.total, "params_active": counts.active,
                     "max_context": spec.architecture.max_position_embeddings,
                     "findings": [f.fact for f in spec.findings]})
    if json_out:
        return terminal.emit_json(rows)
    print(terminal.table(
        ["id", "params", "active", "context", "license", "repo"],
        [[r["id"], terminal.billions(r["params_total"]), terminal.billions(r["params_active"]), r["max_context"],
          r["license"] + ("" if r["open_weights"] else " (no open weights)"),
          r["repo"] or ("built by bench" if r["synthetic"] else "-")] for r in rows]))


@app.command()
def gpus(json_out: JsonOpt = False) -> None:
    """List the target cards and memory budgets."""
    registry = _registry()
    specs = list(registry.hardware.values())
    if json_out:
        return terminal.emit_json([{**s.model_dump(), "budget_bytes": s.budget_bytes,
                                  "cuda_memory_bytes": s.cuda_memory_bytes} for s in specs])
    print(terminal.table(
        ["id", "aliases", "memory", "CUDA offers", "bandwidth GB/s", "bf16 TFLOP/s", "class"],
        [[s.id, ",".join(s.aliases), (f"{s.device_count} x " if s.device_count > 1 else "") + f"{s.memory_gib:g} GiB",
          f"{s.cuda_memory_gib:g} GiB" if s.cuda_memory_gib else "-",
          f"{s.memory_bandwidth_gbs:g}", f"{s.bf16_tflops:g}", s.device_class] for s in specs]))


@app.command()
def plan(
    model: Annotated[Optional[str], typer.Argument(help=(
        "Model id or alias (see `bench models`), a Hub id ORG/NAME[@REVISION] or a local model directory."))] = None,
    gpu: PlanGpuOpt = None,
    quant: Annotated[Optional[str], typer.Option(help=(
        "Weight format: bf16, fp16, fp8, int8, nf4, int4, or a GGUF type (q4_0, q4_k_m, q5_k_m, q6_k, q8_0, f16). "
        "Default: the model's first listed format (bf16 for most) for the breakdown, after what fits per engine; "
        "with --finetune the recipe's."))] = None,
    context: Annotated[Optional[int], typer.Option(min=1, help=(
        "Tokens per sequence. Default: 4096 (or the model's maximum, if smaller); with --finetune the recipe's "
        "sequence length."))] = None,
    batch: Annotated[Optional[int], typer.Option(
        min=1, help="Concurrent sequences; with --finetune the micro batch (default: the recipe's).")] = None,
    finetune: Annotated[Optional[str], typer.Option(
        help=f"Plan a fine-tune recipe: {RECIPES}. Default: none, plan inference.")] = None,
    config: Annotated[Optional[Path], typer.Option(help=(
        "A Hugging Face config.json to plan in place of a model id (an unsupported model_type is refused with the "
        "list of supported ones); a multimodal one (mistral3, llama4, gemma3) counts its vision tower and "
        "projector too. Default: none."))] = None,
    text_only: Annotated[bool, typer.Option("--text-only", help=(
        "Plan the text model alone: drop a multimodal checkpoint's vision tower and projector (0.44B parameters "
        "for Mistral Small 3.1, 0.87B for Llama 4 Scout) from the parameters and weight memory. Default: off, "
        "they are counted, as an engine loading the whole checkpoint (vLLM, transformers) holds them; a GGUF "
        "never holds them (llama.cpp keeps them in a separate mmproj file)."))] = False,
    claims: Annotated[bool, typer.Option("--claims", help="Every claim with its arithmetic verdict.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Memory, fit and speed by arithmetic from the architecture alone.

    With --gpu and no --quant, first what fits: per engine (vLLM, transformers, llama.cpp) the most
    precise format that fits, the context it leaves and the GiB to spare. Then the memory breakdown
    of one configuration, whether it fits the card and by how much, the largest context that fits,
    the fastest and the most precise quant that fits, the roofline speed and the plan's notes. Examples:
    `bench plan mistral-3-small --gpu 4090`,
    `bench plan llama-4-scout --gpu 4090 --finetune qlora-sft`, `bench plan --claims`.
    """
    from bench.report import plan_text

    if claims:
        plan_text.print_claim_plans(_registry(), json_out)
    else:
        if (model is None) == (config is None):
            raise UserError("give a model id or --config PATH (one of them), or --claims")
        plan_text.print_plan(_registry(), model, config, gpu, quant, context, batch, finetune, json_out, text_only)
    # The process's exit need not sweep what a plan made: for `bench plan --claims` the garbage collector's
    # pass at exit cost 0.07 s of CPU, a fifth of the command (scripts/time_plan.py). At exit, not now, so a
    # process that goes on (a test calling the app) collects as usual; a plan holds no engine, child process
    # or open file whose finalizer would have to run.
    atexit.unregister(gc.freeze)  # registered once, however many plans a process makes
    atexit.register(gc.freeze)


@app.command()
def verdicts(
    results_dir: ResultsDirOpt = None,
    json_out: JsonOpt = False,
    verdict: Annotated[Optional[list[str]], typer.Option(
        "--verdict", help="Only claims with this verdict: holds, fails, refuted-by-arithmetic, plausible or "
                          "untested; repeat it or give a comma list. Default: every verdict.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Only claims about this model, an id or alias of `bench models`. Default: every model.")]
    = None,
    page: Annotated[Optional[str], typer.Option(
        "--page", help="Only claims quoted from this page: its claims file's name (as the reports name its page) "
                       "or its seed file. Default: every page.")] = None,
) -> None:
    """Every claim's verdict, with its evidence and conditions.

    From arithmetic and the records in the results directory: the count of each verdict first, then
    the claims. Example: `bench verdicts --verdict fails,untested --model mistral-3b`.
    """
    from bench.records.store import existing_results_dir, iter_records
    from bench.report.verdict_text import page_source, select, totals_line, verdict_words, verdicts_table
    from bench.verdicts.decide import all_verdicts

    registry = _registry()
    words = verdict_words(verdict or [])
    subject = registry.model(model, how="").id if model else None  # verdicts are about registry models
    source = page_source(registry, page) if page else None
    every = all_verdicts(registry, list(iter_records(existing_results_dir(results_dir))))
    shown = select(every, words, subject, source)
    if json_out:
        return terminal.emit_json([v.to_dict() for v in shown])
    print(totals_line(shown, len(every)))
    print()
    print(verdicts_table(shown))


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="Model id or alias (`bench models`), a Hub id ORG/NAME[@REVISION], "
                                                       "or a local model directory.")],
    gpu: GpuOpt = None,
    backend: Annotated[Optional[str], typer.Option(
        help="vllm, transformers or llama.cpp (default: vllm; transformers for the bitsandbytes quants nf4 and "
             "int8; llama.cpp for the GGUF types).")] = None,
    quant: Annotated[str, typer.Option(help=_RUN_QUANT_HELP)] = "bf16",
    weights: WeightsOpt = None,
    gguf: Annotated[Optional[str], typer.Option(
        help="A real GGUF file for --backend llama.cpp: a local path, or owner/repo:file.gguf@COMMIT from the hub "
             "(a 40-hex commit; the hub's sha256 is checked; source, revision and sha256 are recorded). "
             "Default: none (with --weights synthetic bench writes one).")] = None,
    device: DeviceOpt = "cuda",
    batch: Annotated[int, typer.Option(min=1, help="Requests submitted together for the throughput figure.")] = 8,
    prompt_len: Annotated[int, typer.Option(min=1, help="Prompt tokens per request.")] = 128,
    output_len: Annotated[int, typer.Option(min=2, help="Generated tokens per request (forced).")] = 64,
    context: Annotated[Optional[int], typer.Option(
        min=2, help="Also run one request at this context length, in tokens. Default: none.")] = None,
    max_model_len: Annotated[Optional[int], typer.Option(
        min=2, help="The engine's context capacity in tokens (KV cache sized for it) without a request that fills "
                    "it. Default: the longest the run needs (prompt + terminal, or --context).")] = None,
    iterations: Annotated[int, typer.Option(min=1, help="Minimum batch-1 latency iterations.")] = 5,
    min_duration: Annotated[float, typer.Option(min=0, help="Minimum seconds of batch-1 latency runs.")] = 2.0,
    timeout: TimeoutOpt = None,
    results_dir: ResultsDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Measure inference: load, TTFT, ITL, throughput, peak memory.

    Load time, time to first token, inter-token latency, decode and batch throughput, peak
    memory. Runs in an isolated child process and writes one record. Examples:
    `bench run mistral-3-small --gpu 4090`, `bench run tiny-llama --device cpu`,
    `bench run mistral-3b --backend llama.cpp --quant q4_k_m --weights synthetic --device cpu`,
    `bench run mistral-3b --backend llama.cpp --quant q4_k_m --gguf ./Ministral-3b-Q4_K_M.gguf --device cpu`.
    """
    from bench.jobs.inference import run_inference
    from bench.records.store import check_writable
    from bench.records.store import results_dir as resolve_results_dir

    _check_choice("backend", backend, (None, "vllm", "transformers", "llama.cpp"))
    _check_choice("device", device, ("cuda", "cpu"))
    _check_choice("weights", weights, (None, "real", "synthetic"))
    directory = resolve_results_dir(results_dir)
    check_writable(directory, create=False)  # before any download or build: a record needs somewhere to go
    with session(verbose):
        record = run_inference(
            _registry(), model, gpu=gpu, backend=backend, quant=quant, weights=weights, device=device, batch=batch,
            prompt_len=prompt_len, output_len=output_len, context=context, max_model_len=max_model_len,
            min_iterations=iterations, min_duration_s=min_duration, results_dir=directory,
            timeout_s=timeout or (1800 if device == "cuda" else 900), gguf=gguf)
    _finish(record, directory)


@app.command()
def finetune(
    model: Annotated[str, typer.Argument(help="Model id or alias (`bench models`), a Hub id ORG/NAME[@REVISION], "
                                                       "or a local model directory.")],
    recipe: Annotated[str, typer.Option(help=f"A recipe of configs/finetune/: {RECIPES}.")],
    gpu: GpuOpt = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Optimizer steps (default: the recipe's).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        min=0, help="Learning rate (tiny models learn at larger rates). Default: the recipe's.")] = None,
    weights: WeightsOpt = None,
    dataset: Annotated[Optional[str], typer.Option(
        help="builtin:chat-sft, builtin:preference-pairs, a local .jsonl, or a hub dataset id. "
             "Default: the recipe's.")] = None,
    device: DeviceOpt = "cuda",
    timeout: TimeoutOpt = None,
    results_dir: ResultsDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune smoke test: starts, fits, lowers the loss, reloads.

    The recipe starts, fits, lowers the loss, and leaves an adapter (a full fine-tune: the model) that loads. Examples:
    `bench finetune mistral-3-small --recipe qlora-sft --gpu 4090`,
    `bench finetune tiny-llama --recipe dpo --device cpu`.
    """
    from bench.jobs.finetune import run_finetune
    from bench.records.store import check_writable
    from bench.records.store import results_dir as resolve_results_dir

    _check_choice("device", device, ("cuda", "cpu"))
    _check_choice("weights", weights, (None, "real", "synthetic"))
    directory = resolve_results_dir(results_dir)
    check_writable(directory, create=False)  # before any download or build: a record needs somewhere to go
    with session(verbose):
        record = run_finetune(_registry(), model, recipe_name=recipe, gpu=gpu, steps=steps,
                              learning_rate=learning_rate, weights=weights,
                              dataset=dataset, device=device, results_dir=directory,
                              timeout_s=timeout or (3600 if device == "cuda" else 900))
    _finish(record, directory)


@app.command()
def trace(
    model: Annotated[str, typer.Argument(help="Model id or alias (`bench models`), a Hub id ORG/NAME[@REVISION], "
                                              "or a local model directory (config and tokenizer).")],
    finetune: Annotated[Optional[str], typer.Option(
        help="A recipe of configs/finetune/ (SFT: lora-sft, qlora-sft, full-sft; dpo, reward) of a dense model: "
             "its training step is traced. This or --quant (no default).")] = None,
    quant: Annotated[Optional[str], typer.Option(
        help="Trace inference instead: loading and one generate of `bench run --backend transformers` at this "
             "quant (bf16, fp16; with --device cpu). This or --finetune (no default).")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help=(
        "A card id or alias of `bench gpus`: its budget and overhead go beside the traced peak. Default: none."))]
    = None,
    batch: Annotated[Optional[int], typer.Option(min=1, help="Micro batch (default: the recipe's); with --quant, "
                                                             "sequences generated together (default: 8).")] = None,
    context: Annotated[Optional[int], typer.Option(
        min=1, help="Tokens per sequence (default: the recipe's sequence length); with --quant, the prompt plus "
                    "the generated tokens (default: a 128-token prompt plus --output-len).")] = None,
    output_len: Annotated[Optional[int], typer.Option(
        min=2, help="With --quant: tokens generated (forced, as `bench run`). Default: 64.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps traced; the first makes the optimizer's "
                                                   "state. Default: 2.")] = 2,
    device: Annotated[str, typer.Option(help="The device the fake tensors claim: cuda (a card's step, bf16 "
                                             "autocast; needs torch built with CUDA), or cpu (the step of "
                                             "`bench finetune --device cpu`).")] = "cuda",
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Seconds before the trace is killed and "
                                                                     "recorded as a timeout. Default: 1800.")] = None,
    results_dir: ResultsDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """A training step or a generate traced on fake tensors.

    Runs the trainer `bench finetune` builds (--finetune), or the generate of `bench run --backend transformers`
    (--quant), on fake tensors (shape and dtype, no storage: no GPU, no weights) and records the peak of live
    tensors by category and phase; what a card holds beyond tensors is not seen. Examples:
    `bench trace mistral-small-22b --finetune lora-sft --gpu 4090 --device cpu`,
    `bench trace mistral-small-22b --quant bf16 --context 4096 --batch 1 --device cpu`.
    """
    from bench.jobs.trace import TRACE_DEVICES, run_inference_trace, run_trace
    from bench.records.store import check_writable
    from bench.records.store import results_dir as resolve_results_dir

    if (finetune is None) == (quant is None):
        raise UserError("give exactly one of --finetune RECIPE (a training step) or --quant Q (a generate)")
    if finetune is not None and output_len is not None:
        raise UserError("--output-len is for an inference trace (--quant)")
    _check_choice("device", device, TRACE_DEVICES)
    directory = resolve_results_dir(results_dir)
    check_writable(directory, create=False)
    with session(verbose):
        if quant is not None:
            record = run_inference_trace(_registry(), model, quant=quant, gpu=gpu, batch=batch, context=context,
                                         output_len=output_len, device=device, results_dir=directory,
                                         timeout_s=timeout or 1800)
        else:
            record = run_trace(_registry(), model, recipe_name=finetune, gpu=gpu, batch=batch, context=context,
                               device=device, steps=steps, results_dir=directory, timeout_s=timeout or 1800)
    _finish(record, directory)


@app.command(name="eval")
def eval_(
    model: Annotated[str, typer.Argument(help="Model id or alias (`bench models`), a Hub id ORG/NAME[@REVISION], "
                                                       "or a local model directory.")],
    tasks: Annotated[list[str], typer.Option(
        help="A suite of configs/evals/suites.yaml (smoke, claims) or an lm-eval task; repeat for more.")],
    limit: Annotated[Optional[int], typer.Option(min=1, help="Documents per task (for testing only: limited scores "
                                                          "are not citable). Default: every document.")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option(min=0, help="Few-shot examples (default: the task's).")] = None,
    backend: Annotated[str, typer.Option(help="vllm or transformers.")] = "transformers",
    weights: WeightsOpt = None,
    device: DeviceOpt = "cuda",
    timeout: TimeoutOpt = None,
    results_dir: ResultsDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """lm-eval scores with standard errors; one record.

    Example: `bench eval tiny-llama --tasks smoke --device cpu`.
    """
    from bench.config.registry import default_config_dir
    from bench.jobs.eval import run_eval
    from bench.records.store import check_writable
    from bench.records.store import results_dir as resolve_results_dir

    _check_choice("backend", backend, ("vllm", "transformers"))
    _check_choice("device", device, ("cuda", "cpu"))
    _check_choice("weights", weights, (None, "real", "synthetic"))
    directory = resolve_results_dir(results_dir)
    check_writable(directory, create=False)  # before any download or build: a record needs somewhere to go
    with session(verbose):
        record = run_eval(_registry(), default_config_dir(), model, tasks=tasks, limit=limit,
                          num_fewshot=num_fewshot, backend=backend, weights=weights, device=device,
                          results_dir=directory, timeout_s=timeout or (7200 if device == "cuda" else 900))
    _finish(record, directory)


def _check_choice(option: str, value: Optional[str], allowed: tuple) -> None:
    if value not in allowed:
        names = ", ".join(a for a in allowed if a)
        raise UserError(f"unknown {option} {value!r}; choose {names}")


def _finish(record, results_dir: Path) -> None:
    """Print the record's summary; when the run itself failed, one line on stderr and exit 1."""
    from bench.records.store import saved_path
    from bench.report.record_text import error_line, render_record

    print(render_record(record))
    path = saved_path(record.id, results_dir)  # a fallback place when the results folder refused it
    print(f"record: {path}")
    if record.details.get("log"):
        print(f"engine log: {record.details['log']}")
    if record.status != "ok":
        print(f"error: run {record.status}: {error_line(record)}", file=sys.stderr)
        raise typer.Exit(1)
    if path.parent != results_dir:  # measured, but not where it was asked for (the error line said so)
        raise typer.Exit(1)


@app.command()
def results(
    results_dir: ResultsDirOpt = None,
    json_out: JsonOpt = False,
    record_id: Annotated[Optional[str], typer.Option(
        "--id", help="Show one record in full: each figure with its spread, a serve record's levels, an eval's "
                     "scores. Default: none, list every record.")] = None,
) -> None:
    """List the records in the results directory.

    One table per kind (inference, serve, eval, finetune): status, engine, card and the figures a
    reader compares. `--id ID` shows one record in full.
    """
    from bench.records.store import existing_results_dir
    from bench.report.record_text import record_view, results_table

    directory = existing_results_dir(results_dir)
    print(record_view(directory, record_id, json_out) if record_id else results_table(directory, json_out))


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for index.html, index.md, pages and plots.")] = Path("reports"),
    results_dir: ResultsDirOpt = None,
) -> None:
    """Write the comparison reports, in HTML and Markdown.

    Every claim's verdict, measured tables, plots, provenance, regressions.
    """
    from bench.config.registry import default_config_dir
    from bench.records.store import existing_results_dir
    from bench.report.build import build_report

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: not a folder")
    summary = build_report(_registry(), existing_results_dir(results_dir), out, default_config_dir())
    print(f"wrote {out / 'index.html'} and {len(summary.pages)} comparison pages from {summary.records} records"
          f" ({summary.regressions} regression(s))")


@app.command()
def cite(
    claim_or_record: Annotated[str, typer.Argument(
        metavar="ID", help="A claim id (see `bench verdicts`) or a record id (see `bench results`).")],
    fmt: Annotated[str, typer.Option("--format", help="text, markdown, bibtex (a @misc entry) or json.")] = "text",
    results_dir: ResultsDirOpt = None,
) -> None:
    """A paste-ready citation of a claim's verdict or of one record.

    Quote, speaker and page; verdict and its evidence class; the deciding number; conditions; the
    command that reproduces it; bench version and commit; record ids. Example: `bench cite
    mistral-medium-3-apache-blurb --format markdown`.
    """
    from bench.records.store import existing_results_dir
    from bench.report.cite import cite as make_citation

    print(make_citation(_registry(), claim_or_record, existing_results_dir(results_dir), fmt))


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="Results directory of the baseline (e.g. last night).")],
    candidate: Annotated[Path, typer.Argument(help="Results directory to check against it.")],
    speed_drop: Annotated[Optional[float], typer.Option(
        help="A speed lower (or a latency higher) by more than this fraction can be a regression. "
             "Default: configs/report.yaml, 0.10.")] = None,
    memory_growth: Annotated[Optional[float], typer.Option(
        help="Peak memory higher by more than this fraction is a regression. Default: configs/report.yaml, 0.05.")]
    = None,
    alpha: Annotated[Optional[float], typer.Option(
        help="Significance level of the rank test on the raw samples. Default: configs/report.yaml, 0.01.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown (a GitHub table) or json.")] = "table",
) -> None:
    """Compare two result sets; exit 1 on a regression, 0 without.

    The latest run of each configuration in both sets, metric by metric. A speed or latency change is a
    regression only when it is beyond --speed-drop AND beyond the noise: the runs' raw samples differ by a
    two-sided Mann-Whitney U test at --alpha. A speed with too few samples to tell from noise is "not
    comparable" (never a regression); peak memory, one reading per run, is judged by --memory-growth alone.
    Each row says why (p-value, sample counts). Exit 2 on bad input. Example: `bench compare previous results
    --format markdown`.
    """
    from bench.config.registry import default_config_dir
    from bench.records.store import iter_records
    from bench.report.compare import FORMATS, render
    from bench.report.regressions import Thresholds, compare_sets

    _check_choice("format", fmt, FORMATS)
    limits = Thresholds.from_config(default_config_dir(), speed_drop=speed_drop, memory_growth=memory_growth,
                                    alpha=alpha)
    for path in (baseline, candidate):
        if not path.is_dir():
            raise UserError(f"{path}: no such results directory")
    changes = compare_sets(list(iter_records(baseline)), list(iter_records(candidate)), limits)
    if not changes:
        print("[]" if fmt == "json" else "no configuration was run in both sets")
        return
    print(render(changes, limits, fmt))
    if any(c.regression for c in changes):
        raise typer.Exit(1)


@app.command()
def sweep(
    file: Annotated[Path, typer.Argument(help="A sweep file, e.g. configs/sweeps/smoke.yaml.")],
    executor: Annotated[str, typer.Option(help="local (one cell at a time) or ray (RAY_ADDRESS, else local Ray).")]
    = "local",
    force: Annotated[bool, typer.Option("--force", help="Re-run cells that already have a record.")] = False,
    only_gpu: Annotated[Optional[str], typer.Option(
        help="Run only the cells for this card (one runner per card). Default: every cell.")] = None,
    results_dir: ResultsDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Many runs from a sweep file, each isolated.

    A failed cell is a failed record and the sweep goes on. Exit 1 when a cell crashed or
    timed out, or ended other than its block's `expect`; an out-of-memory is a measured result
    (the configuration does not fit), not a failure of the sweep. Cells whose card arithmetic
    already rules out are listed and not run.
    """
    from bench.jobs.sweep import expand, load_sweep, run_sweep, select_runner_cells
    from bench.records.store import check_writable
    from bench.records.store import results_dir as resolve_results_dir

    _check_choice("executor", executor, ("local", "ray"))
    registry = _registry()
    if not file.is_file():
        raise UserError(f"{file}: no such sweep file")
    spec = load_sweep(file, registry)
    cells = expand(spec, registry)
    if only_gpu is not None:
        cells, left_out = select_runner_cells(spec, cells, registry.gpu(only_gpu).id)
        if left_out:
            print(f"--only-gpu leaves out {left_out} cell(s) that name no card (set unpinned_runner in {file})",
                  file=sys.stderr)
    check_writable(resolve_results_dir(results_dir))
    with session(verbose):
        progress = run_sweep(cells, resolve_results_dir(results_dir), executor, force)
    print(f"{spec.id}: {progress.done} ok, {progress.oom} out of memory, {progress.failed} failed, "
          f"{progress.skipped} skipped, {progress.refuted} refuted by arithmetic (not run) of {progress.total}")
    for line in progress.unexpected:
        print(f"unexpected: {line}", file=sys.stderr)
    if progress.failed or progress.unexpected:
        raise typer.Exit(1)


@app.command()
def serve(
    target: Annotated[str, typer.Argument(metavar="URL|MODEL", help="A server's root URL, or a model (registry "
                                          "id, Hub id ORG/NAME[@REVISION] or folder) for bench to serve on "
                                          "loopback (llama.cpp for GGUF quants, else vLLM).")],
    concurrency: Annotated[Optional[list[int]], typer.Option(
        min=1, help="Concurrent requests of a level; repeat for a sweep (default 1, 2, 4, 8).")] = None,
    rate: Annotated[Optional[list[float]], typer.Option(
        min=0.001, help="Requests/s of a Poisson-arrival level; repeat for more. Default: none.")] = None,
    api: Annotated[str, typer.Option(help="completions or chat (both streamed).")] = "completions",
    prompt_len: Annotated[int, typer.Option(min=1, help="Prompt tokens per request (the model's tokenizer).")] = 128,
    output_len: Annotated[int, typer.Option(min=2, help="Output tokens (forced where the server allows).")] = 64,
    duration: Annotated[float, typer.Option(min=0, help="Minimum seconds per level.")] = 10.0,
    min_requests: Annotated[int, typer.Option(min=1, help="Minimum requests per level.")] = 8,
    warmup: Annotated[int, typer.Option(min=0, help="Requests sent before the first level, not measured.")] = 2,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before a request counts as timed out.")] = 60.0,
    slo_ttft: Annotated[float, typer.Option(help="Goodput SLO: time to first token, seconds.")] = 1.0,
    slo_itl: Annotated[float, typer.Option(help="Goodput SLO: mean inter-token latency (TPOT), seconds.")] = 0.1,
    served_model: Annotated[Optional[str], typer.Option(help="URL: the served model's name (default: the only one).")]
    = None,
    model_id: Annotated[Optional[str], typer.Option(
        help="URL: the registry model the server serves (for claims). Default: none.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(
        help="A local tokenizer directory (default: the server's tokenize endpoint, else usage fields).")] = None,
    quant: Annotated[str, typer.Option(help=_SERVE_QUANT_HELP)] = "bf16",
    weights: WeightsOpt = None,
    gguf: Annotated[Optional[str], typer.Option(
        help="MODEL: a real GGUF file for llama.cpp's server, a local path or owner/repo:file.gguf@COMMIT "
             "(sha256 checked and recorded). Default: bench's synthetic GGUF with --weights synthetic.")] = None,
    device: DeviceOpt = "cuda",
    gpu: Annotated[Optional[str], typer.Option(
        help="The card the server runs on (recorded; claims name it). Default: none.")] = None,
    startup_timeout: Annotated[float, typer.Option(help="MODEL: seconds to wait for the server.")] = 600.0,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key (never recorded).")]
    = "OPENAI_API_KEY",
    results_dir: ResultsDirOpt = None,
) -> None:
    """Load-test an OpenAI-compatible server.

    TTFT, ITL, TPOT, latency, throughput and goodput per level. Examples:
    `bench serve http://127.0.0.1:8000 --concurrency 1 --concurrency 8`,
    `bench serve tiny-llama --quant q4_k_m --device cpu --rate 2`.
    """
    from bench.records.store import results_dir as resolve_results_dir
    from bench.report.serve import levels_table
    from bench.serve.command import run_serve

    _check_choice("api", api, ("completions", "chat"))
    _check_choice("device", device, ("cuda", "cpu"))
    _check_choice("weights", weights, (None, "real", "synthetic"))
    directory = resolve_results_dir(results_dir)
    record = run_serve(_registry, target, concurrency or [], rate or [], api=api, prompt_len=prompt_len,
                       output_len=output_len, duration=duration, min_requests=min_requests, warmup=warmup,
                       timeout=timeout, slo=(slo_ttft, slo_itl), served_model=served_model, model_id=model_id,
                       tokenizer=tokenizer, quant=quant, weights=weights, device=device, gpu=gpu,
                       startup_timeout=startup_timeout, api_key_env=api_key_env, results_dir=directory, gguf=gguf)
    print(levels_table(record))
    _finish(record, directory)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _shield_teardown() -> None:
    """Ignore Ctrl-C and SIGTERM once the command has returned, and again as Python tears the process down.

    The command has finished and its exit code is set, but freeing a report's objects takes about half a
    second; an interrupt there used to land in some object's finalizer ("Exception ignored ...
    KeyboardInterrupt", exit 0 with a traceback) or, once Python had put the default handlers back, kill
    the process with no line at all; one arriving between the command's return and `sys.exit` printed a
    traceback. Called as the command returns, and registered first at exit, so it runs after every handler a
    library adds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> None:
    # torch and NVML must number devices the same way (PCI bus order).
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    # SIGTERM (a scheduler's stop) unwinds like Ctrl-C, so a run in progress stops its child tree on the way out.
    signal.signal(signal.SIGTERM, _interrupted)
    atexit.register(_shield_teardown)
    try:
        code = app(standalone_mode=False)  # click's usage errors come here, to be told in one line
        _shield_teardown()  # the command is done: an interrupt from here on cannot change what it did
    except _UsageError as err:  # a bad option value, an unknown option, a missing argument
        if type(err).__name__ == "NoArgsIsHelpError":  # plain `bench`: the help is the answer
            err.show()
            sys.exit(2)
        command = err.ctx.info_name if err.ctx and err.ctx.parent else ""  # the subcommand, if one was named
        where = f" {command}" if command else ""
        print(f"error: {command + ': ' if command else ''}{err.format_message()} (see bench{where} --help)",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before or after a command (a command's own comes back as code 130)
        _shield_teardown()  # a second one must not break the one line below into a traceback
        code = INTERRUPTED
    except UserError as err:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except ValueError as err:
        from bench.records.store import SecretInRecord

        if not isinstance(err, SecretInRecord) or os.environ.get("BENCH_DEBUG"):
            raise
        # The run finished but its record would carry a secret: nothing is written, and the run failed.
        print(f"error: {err}; no record was written", file=sys.stderr)
        sys.exit(1)
    if code == INTERRUPTED:  # Ctrl-C or SIGTERM: the run in progress stopped and wrote no record
        print("error: interrupted; records written before stay as they are", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
