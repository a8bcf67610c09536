"""Turn plans into what `bench plan` prints: a readable breakdown or the JSON contract."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from bench.backends.capabilities import BACKENDS, ENGINE_QUANTS
from bench.config.hfconfig import read_hf_config
from bench.config.registry import MODEL_NAMING, Registry
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.estimate.quant import FORMATS
from bench.report import terminal
from bench.units import gib
from bench.verdicts.decide import all_verdicts
from bench.verdicts.memory import four_bit_variant


def print_plan(registry: Registry, model: str | None, config: Path | None, gpu: str | None, quant: str | None,
               context: int | None, batch: int | None, finetune: str | None, json_out: bool,
               text_only: bool = False) -> None:
    if config is not None:  # bench's arithmetic for a family it knows, else transformers' count on meta
        from bench.weights.named_model import config_subject

        subject = config_subject(read_hf_config(config), str(config), text_only)
    else:
        subject = named_subject(registry, model or "", text_only)
    gpu_spec = registry.gpu(gpu) if gpu else None
    recipe = registry.recipe(finetune) if finetune else None
    req = PlanRequest(subject, gpu_spec, quant, context, batch, recipe)
    plan = make_plan(req, engine_formats())
    if gpu_spec is None:
        plan["fits_on"] = {g.id: make_plan(PlanRequest(subject, g, quant, context, batch, recipe))["fits"]
                           for g in registry.hardware.values()}
    if json_out:
        return terminal.emit_json(plan)
    # Asked for no format, the question is "what fits?": the answer per engine comes first.
    answer = render_fits_by_engine(plan) if quant is None and plan["fits_by_engine"] else []
    print("\n".join([*render_source(plan), *answer, render_plan(plan), *render_notes(plan)]))


def named_subject(registry: Registry, name: str, text_only: bool = False) -> Subject:
    """The plan's subject for a name: a registry model, a local folder or a Hub id (`named_model`)."""
    if (spec := registry.find_model(name)) is not None:  # the common case, without the hub's modules
        return Subject.from_spec(spec, text_only)
    from bench.weights.named_model import find_model, folder_subject, hub_subject

    found = find_model(registry, name, f"{MODEL_NAMING}, or pass --config PATH")
    if found.spec is not None:
        return Subject.from_spec(found.spec, text_only)
    if found.folder is not None:
        return folder_subject(found.folder, text_only)
    return hub_subject(found.hub, text_only)


def render_source(plan: dict[str, Any]) -> list[str]:
    """Where a Hub or folder subject's config came from, and what its checkpoint's headers hold."""
    source, ckpt = plan.get("source"), plan.get("checkpoint")
    if not source:
        return []
    where = (f"{source['repo']}@{source['commit']} (asked {source['revision']}, license {source['license']})"
             if "repo" in source else source["path"])
    lines = [f"config: {where}"]
    if ckpt:
        shares = "; ".join(f"{dtype}: {share['tensors']:,} tensors, {share['elements']:,} elements, "
                           f"{share['bytes']:,} bytes" for dtype, share in ckpt["by_dtype"].items())
        lines.append(textwrap.fill(f"checkpoint: {ckpt['format']}, {ckpt['total_bytes']:,} bytes in "
                                   f"{ckpt['files']} safetensors file(s), {ckpt['logical_params']:,} parameters "
                                   f"({shares})", terminal.WIDTH, subsequent_indent="  "))
    return lines


def engine_formats() -> dict[str, tuple[str, ...]]:
    """The formats each engine runs on a card, as the plan estimates them. llama.cpp's rows weigh its GGUF
    types: a 16-bit GGUF is estimated as f16 (a BF16 file holds the same bytes), while the plan's `bf16`
    is a checkpoint estimated with vLLM's and transformers' runtime."""
    return {engine: tuple(q for q in ENGINE_QUANTS[engine]["cuda"] if engine != "llama.cpp" or FORMATS[q].gguf)
            for engine in BACKENDS}


def render_fits_by_engine(plan: dict[str, Any]) -> list[str]:
    """The short answer to "does it fit this card?": per engine the most precise format that fits at the
    plan's context, the context it leaves, the GiB to spare and its roofline decode rate."""
    rows = [[r["engine"], *(_fitting_cells(r) if r["quant"] else [_no_fit(r), "-", "-", "-", "-"])]
            for r in plan["fits_by_engine"]]
    table = terminal.table(["engine", "most precise that fits", "bits/weight", "largest context", "to spare",
                            "decode tok/s (roofline)"], rows)
    budget = plan["memory"]["budget_bytes"]
    return [f"{plan['model']} on {plan['gpu']} ({gib(budget, 2)}): what fits, inference at context "
            f"{plan['context']:,}, batch {plan['batch']}",
            *("  " + line for line in table.splitlines()),
            "  most precise: the most bits per quantised weight; "
            "fastest: the highest roofline decode rate at batch 1",
            f"breakdown of {plan['quant']}, the model's first listed format (--quant picks another):"]


def _fitting_cells(row: dict[str, Any]) -> list[str]:
    return [row["quant"], f"{FORMATS[row['quant']].bits_per_weight:.3g}", f"{row['max_context_that_fits']:,}",
            gib(row["headroom_bytes"], 2), terminal.rate(row["decode_tokens_per_s"])]


def _no_fit(row: dict[str, Any]) -> str:
    if not row["considered"]:
        return "none of its formats applies"
    return f"none fits, not even {row['considered'][-1]}"  # the least precise of its formats


def render_notes(plan: dict[str, Any]) -> list[str]:
    return [textwrap.fill(f"note: {note}", terminal.WIDTH, initial_indent="  ", subsequent_indent="    ")
            for note in plan["notes"]]


def _vision_clause(vision: dict[str, Any] | None) -> str:
    if vision is None:
        return ""
    size = terminal.billions(vision["params"])
    where = "in the weights" if vision["counted"] else "left out of the weights"
    return f"; vision tower and projector {size}, {where}"


def render_plan(plan: dict[str, Any]) -> str:
    mem, params = plan["memory"], plan["params"]
    what = f"fine-tune {plan['finetune']}" if plan["finetune"] else "inference"
    lines = [f"{plan['model']}: {what}, {plan['quant']}, context {plan['context']}, batch {plan['batch']}"
             + (f", on {plan['gpu']}" if plan["gpu"] else "")]
    if plan["proxy"]:
        lines.append(f"  proxy shape: {plan['proxy']}")
    lines.append(f"  params: {terminal.billions(params['total'])} total, {terminal.billions(params['active'])} active"
                 + _vision_clause(params.get("vision")))
    gguf = FORMATS.get(plan["quant"]) is not None and FORMATS[plan["quant"]].gguf
    rows = [["weights (GGUF tensors)" if gguf else "weights", gib(mem["weights_bytes"])]]
    if plan["finetune"]:
        rows.append([f"trainable state ({terminal.billions(mem['trainable_params'])} params)",
                     gib(mem["trainable_bytes"])])
    else:
        rows.append([f"KV cache ({mem['kv_bytes_per_token']:,} B/token)", gib(mem["kv_cache_bytes"])])
    rows += [["activations", gib(mem["activations_bytes"])], ["logits", gib(mem["logits_bytes"])]]
    if plan["finetune"]:
        rows.append(["allocator active peak", gib(mem["active_peak_bytes"])])
        if mem["outside_allocator_bytes"]:
            rows.append(["paged optimizer state (host-pageable, not counted)",
                         gib(mem["outside_allocator_bytes"])])
    rows += [["runtime overhead", gib(mem["overhead_bytes"])], ["total", gib(mem["total_bytes"])]]
    if mem["budget_bytes"] is not None:
        rows.append(["budget", gib(mem["budget_bytes"])])
    lines += ["  " + line for line in terminal.table(["memory", "GiB"], rows).splitlines()]
    sentences = (fit_sentences(plan) if plan["gpu"] else []) + floor_sentences(plan)
    lines += [textwrap.fill(s, terminal.WIDTH, initial_indent="  ", subsequent_indent="    ") for s in sentences]
    if "fits_on" in plan:
        fits = [g for g, ok in plan["fits_on"].items() if ok]
        lines.append(f"  fits on: {', '.join(fits) or 'none of the registry cards'}")
    return "\n".join(lines)


def _training_limits(plan: dict[str, Any]) -> str:
    """The longest sequence at the micro batch, and the largest micro batch at the sequence length; a
    limit that is zero is said in words, not printed as "0 tokens"."""
    batch, length = plan["batch"], plan["context"]
    longest, micro = plan["max_context_that_fits"], plan["max_micro_batch_that_fits"]
    return "; ".join([
        f"longest sequence that fits at micro batch {batch}: {longest:,} tokens" if longest
        else f"no sequence length fits at micro batch {batch}",
        f"largest micro batch at {length:,} tokens: {micro:,}" if micro else f"no micro batch fits at {length:,} tokens",
    ])


def fit_sentences(plan: dict[str, Any]) -> list[str]:
    """Whether it fits, by how much (hundredths of a GiB: a budget is decided by small margins), and
    the roofline speed only for a configuration that fits."""
    mem = plan["memory"]
    total, budget = mem["total_bytes"], mem["budget_bytes"]
    margin = f"needs {gib(total, 2)} of {gib(budget, 2)}"
    if plan["fits"]:
        lines = [f"fits on {plan['gpu']}: {margin} ({gib(budget - total, 2)} to spare)"]
    else:
        lines = [f"does not fit on {plan['gpu']}: {margin} ({gib(total - budget, 2)} over)"]
    largest = plan["max_context_that_fits"]
    if plan["finetune"]:
        lines.append(_training_limits(plan))
    else:
        lines.append(f"largest context that fits: {largest:,} tokens" if largest
                     else "does not fit at any context")
    if not plan["finetune"]:
        lines.append(f"fastest quant that fits: {plan['fastest_quant_that_fits'] or 'none'}; "
                     f"highest precision that fits: {plan['highest_precision_quant_that_fits'] or 'none'}")
    if plan["fits"]:
        rl = plan["roofline"]
        lines.append(f"roofline: decode {terminal.rate(rl['decode_tokens_per_s'])} tok/s at batch 1, "
                     f"prefill {terminal.rate(rl['prefill_tokens_per_s'])} tok/s"
                     + (f", training {terminal.rate(rl['train_tokens_per_s'])} tok/s" if "train_tokens_per_s" in rl
                        else ""))
    else:
        lines.append("no roofline speed: a configuration that does not fit has none")
    return lines


def floor_sentences(plan: dict[str, Any]) -> list[str]:
    """When the weights counted exceed their floor (a quantiser that leaves fused MoE experts in 16 bits),
    what the floor is and whether even it rules the card out: the verdict rests on the floor."""
    mem = plan["memory"]
    floor, weights = mem.get("weights_floor_bytes"), mem["weights_bytes"]
    if floor is None or floor >= weights:
        return []
    lines = [f"today's bitsandbytes leaves the fused experts in 16 bits ({gib(weights)} of weights); "
             f"even with experts packed at 4 bits the weights alone are {gib(floor)}"]
    budget = mem["budget_bytes"]
    if budget is not None and mem["lower_bound_bytes"] > budget:
        lines.append(f"so it cannot fit on {plan['gpu']} however the experts are packed: the lower bound "
                     f"{gib(mem['lower_bound_bytes'], 2)} exceeds {gib(budget, 2)}")
    return lines


def claim_plans(registry: Registry) -> list[dict[str, Any]]:
    """One plan per claim at the conditions its verdict used, with claim_id and verdict. Claims on the same
    model at the same conditions share one plan, made once: the registry's 86 claims name 28 of them."""
    plans, made = [], {}
    for verdict in all_verdicts(registry):
        claim = registry.claim(verdict.claim_id)
        cond = verdict.conditions
        key = (claim.subject, *(cond.get(k) for k in ("gpu", "recipe", "quant", "context", "batch")))
        if key not in made:
            made[key] = _claim_plan(registry, claim.subject, cond)
        plans.append({"claim_id": claim.id, "verdict": verdict.verdict, "reason": verdict.reason,
                      "kind": claim.kind, "quote": claim.quote, **made[key]})
    return plans


def _claim_plan(registry: Registry, model: str, cond: dict[str, Any]) -> dict[str, Any]:
    gpu = registry.gpu(cond["gpu"]) if cond.get("gpu") else None
    recipe = registry.recipe(cond["recipe"]) if cond.get("recipe") else None
    if recipe is not None and cond.get("quant") != recipe.quant:
        recipe = four_bit_variant(recipe)  # the verdict was reached on a 4-bit base
    subject = Subject.from_spec(registry.model(model))
    quant = None if recipe else cond.get("quant")
    return make_plan(PlanRequest(subject, gpu, quant, cond.get("context"), cond.get("batch") or 1, recipe))


def print_claim_plans(registry: Registry, json_out: bool) -> None:
    plans = claim_plans(registry)
    if json_out:
        return terminal.emit_json(plans)
    print(terminal.table(
        ["claim", "kind", "gpu", "quant", "estimate", "budget", "verdict"],
        [[p["claim_id"], p["kind"], p["gpu"] or "-", p["quant"],
          gib(p["memory"]["total_bytes"]) if p["gpu"] else "-", gib(p["memory"]["budget_bytes"]),
          p["verdict"]] for p in plans]))
