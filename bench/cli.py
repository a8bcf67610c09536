"""The ``bench`` command line: parses, delegates, prints.

Commands here need no model, so this module imports neither torch, transformers
nor vllm (a test checks it). Bad input raises :class:`bench.errors.UserError`,
which :func:`main` turns into one line on stderr and exit code 2; set
``BENCH_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench import output
from bench.errors import UserError

app = typer.Typer(
    help="Check claims about open-weight LLMs against arithmetic and measurement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]
GpuOpt = Annotated[Optional[str], typer.Option("--gpu", help="Target card id or alias (see `bench gpus`).")]


def _registry():
    from bench.registry import load_registry

    return load_registry()


@app.command()
def models(json_out: JsonOpt = False) -> None:
    """List the models of the registry with their parameter counts."""
    from bench.plan import Subject

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
        return output.emit_json(rows)
    print(output.table(
        ["id", "params", "active", "context", "license", "repo"],
        [[r["id"], output.billions(r["params_total"]), output.billions(r["params_active"]), r["max_context"],
          r["license"] + ("" if r["open_weights"] else " (no open weights)"),
          r["repo"] or ("built by bench" if r["synthetic"] else "-")] for r in rows]))


@app.command()
def gpus(json_out: JsonOpt = False) -> None:
    """List the target cards and memory budgets."""
    registry = _registry()
    specs = list(registry.hardware.values())
    if json_out:
        return output.emit_json([{**s.model_dump(), "budget_bytes": s.budget_bytes} for s in specs])
    print(output.table(
        ["id", "aliases", "memory", "bandwidth GB/s", "bf16 TFLOP/s", "class"],
        [[s.id, ",".join(s.aliases), (f"{s.device_count} x " if s.device_count > 1 else "") + f"{s.memory_gib:g} GiB",
          f"{s.memory_bandwidth_gbs:g}", f"{s.bf16_tflops:g}", s.device_class] for s in specs]))


@app.command()
def plan(
    model: Annotated[Optional[str], typer.Argument(help="Model id or alias (see `bench models`).")] = None,
    gpu: GpuOpt = None,
    quant: Annotated[Optional[str], typer.Option(help="Weight format: bf16, fp16, fp8, int8, nf4, int4.")] = None,
    context: Annotated[Optional[int], typer.Option(min=1, help="Tokens per sequence (default 4096).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Concurrent sequences.")] = 1,
    finetune: Annotated[Optional[str], typer.Option(help="Plan a fine-tune recipe instead of inference.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A Hugging Face config.json instead of a model id.")] = None,
    claims: Annotated[bool, typer.Option("--claims", help="Every claim with its arithmetic verdict.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Arithmetic: memory breakdown, fit, largest context, fastest quant, roofline speed.

    Examples: `bench plan mistral-3-small --gpu 4090`,
    `bench plan llama-4-scout --gpu 4090 --finetune qlora-sft`, `bench plan --claims`.
    """
    from bench import plan_output

    if claims:
        return plan_output.print_claim_plans(_registry(), json_out)
    if (model is None) == (config is None):
        raise UserError("give a model id or --config PATH (one of them), or --claims")
    plan_output.print_plan(_registry(), model, config, gpu, quant, context, batch, finetune, json_out)


@app.command()
def verdicts(json_out: JsonOpt = False) -> None:
    """Every claim with its verdict, evidence and conditions."""
    from bench.verdicts import all_verdicts

    results = all_verdicts(_registry())
    if json_out:
        return output.emit_json([v.to_dict() for v in results])
    print(output.table(["claim", "verdict", "why"], [[v.claim_id, v.verdict, v.reason] for v in results]))


def main() -> None:
    # torch and NVML must number devices the same way (PCI bus order).
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        app()
    except UserError as err:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
