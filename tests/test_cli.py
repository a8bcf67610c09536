"""The command line as a user meets it: output, exit codes, one-line errors, and start-up imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers.imports import HEAVY, PROBE
from tests.helpers.paths import ROOT


@pytest.mark.parametrize("args", [
    ["--help"], ["models"], ["gpus"], ["plan", "mistral-3-small", "--gpu", "4090"],
    ["plan", "--claims"], ["verdicts"],
])
def test_model_free_commands_import_no_engine(args):
    probe = PROBE.format(heavy=set(HEAVY))
    proc = subprocess.run([sys.executable, "-c", probe, json.dumps(args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stderr
    assert report["heavy"] == []


def test_models_lists_registry_with_counts(run_bench):
    proc = run_bench("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert {"mistral-3b", "mistral-small-22b", "mistral-3-small", "mistral-medium-3", "mixtral-8x22b",
            "llama-4-scout", "llama-4-maverick", "tiny-llama", "tiny-mixtral"} <= set(rows)
    assert rows["mixtral-8x22b"]["params_active"] == 39_161_468_928
    assert rows["mistral-medium-3"]["open_weights"] is False


def test_gpus_resolve_aliases_and_budget(run_bench):
    proc = run_bench("gpus", "--json")
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert {"rtx-4090", "rtx-3090", "a10", "l4", "l40s", "a100-40gb", "a100-80gb", "2x-a100-80gb",
            "h100-80gb", "h200", "edge-4gb", "edge-8gb"} <= set(rows)
    assert rows["2x-a100-80gb"]["budget_bytes"] == 2 * rows["a100-80gb"]["budget_bytes"]
    assert "4090" in rows["rtx-4090"]["aliases"]


@pytest.mark.parametrize("args,expected", [
    (["plan", "mistral-smal-3"], "did you mean"),
    (["plan", "mistral-3-small", "--gpu", "4080"], "unknown GPU '4080'; did you mean: 4090"),
    (["plan", "mistral-3-small", "--finetune", "lora"], "unknown recipe 'lora'; did you mean: lora-sft"),
    (["run", "tiny-lama", "--device", "cpu"], "unknown model 'tiny-lama'; did you mean: tiny-llama"),
    (["cite", "mistral-3b-on-devic"], "did you mean: mistral-3b-on-device"),
    (["plan", "tiny-llama", "--quant", "nf4"], "does not apply to tiny-llama"),
    (["plan", "mistral-3-small", "--context", "100000"], "exceeds mistral-3-small's maximum"),
    (["plan"], "give a model id"),
])
def test_bad_input_is_one_line_and_exit_2(run_bench, args, expected):
    proc = run_bench(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_model_suggests_closest_ids(run_bench):
    proc = run_bench("plan", "mistral-smal-3")
    assert "mistral-3-small" in proc.stderr or "mistral-small-3" in proc.stderr


@pytest.fixture
def config_copy(tmp_path):
    target = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", target)
    return target


def test_yaml_with_unknown_field_names_file_and_field(run_bench, config_copy):
    path = config_copy / "models" / "tiny-llama.yaml"
    path.write_text(path.read_text().replace("  num_hidden_layers: 2", "  num_hidden_layer: 2"))
    proc = run_bench("models", env={"BENCH_CONFIG_DIR": str(config_copy)})
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "num_hidden_layer: unknown field" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_yaml_with_wrong_type_names_file_and_field(run_bench, config_copy):
    path = config_copy / "hardware" / "rtx-4090.yaml"
    text = path.read_text()
    lines = [("memory_gib: lots" if line.startswith("memory_gib:") else line) for line in text.splitlines()]
    path.write_text("\n".join(lines) + "\n")
    proc = run_bench("gpus", env={"BENCH_CONFIG_DIR": str(config_copy)})
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "memory_gib" in proc.stderr


def test_broken_yaml_syntax_names_file_and_line(run_bench, config_copy):
    path = config_copy / "finetune" / "dpo.yaml"
    path.write_text("id: dpo\nmethod: [dpo\n")
    proc = run_bench("models", env={"BENCH_CONFIG_DIR": str(config_copy)})
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "line" in proc.stderr


def test_claim_naming_an_unknown_gpu_is_rejected(run_bench, config_copy):
    path = next((config_copy / "claims").glob("*.yaml"))
    text = path.read_text()
    path.write_text(text.replace("gpu: rtx-4090", "gpu: rtx-5090", 1))
    assert text != path.read_text()
    proc = run_bench("verdicts", env={"BENCH_CONFIG_DIR": str(config_copy)})
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "unknown GPU 'rtx-5090'" in proc.stderr


def test_run_keeps_engine_logs_out_of_the_terminal(tmp_path, run_bench):
    """`bench run` on the CPU: the terminal shows bench's summary only; the engine's lines are in the log."""
    proc = run_bench("run", "tiny-llama", "--device", "cpu", "--backend", "transformers", "--iterations", "2",
                     "--min-duration", "0.1", "--batch", "2", "--output-len", "4", "--prompt-len", "8",
                     "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (log,) = tmp_path.glob("*.log")
    engine_lines = [line.strip() for line in log.read_text().splitlines() if line.strip()]
    assert engine_lines, "the engine wrote nothing to its log"
    terminal = proc.stdout + proc.stderr
    assert not [line for line in engine_lines if line in terminal]
    assert f"engine log: {log}" in proc.stdout
    assert "TTFT (p50)" in proc.stdout and " ms " in proc.stdout and "n=" in proc.stdout  # human units, samples
    paths = ("record:", "engine log:")  # a file's path is as long as the folder it is in
    assert max(len(line) for line in proc.stdout.splitlines() if not line.startswith(paths)) <= 120


def test_verbose_run_streams_the_engine_log_to_stderr(tmp_path, run_bench):
    """`--verbose`: every line of the engine's log, its phase lines included, also reaches stderr; the
    summary on stdout stays as it is."""
    proc = run_bench("run", "tiny-llama", "--device", "cpu", "--backend", "transformers", "--iterations", "2",
                     "--min-duration", "0", "--batch", "2", "--output-len", "4", "--prompt-len", "8",
                     "--results-dir", str(tmp_path), "--verbose")
    assert proc.returncode == 0, proc.stderr
    (log,) = tmp_path.glob("*.log")
    logged = [line for line in log.read_text().splitlines() if line.strip()]
    assert "bench-phase: loading the model" in logged and "bench-phase: latency iteration 2 of 2" in logged
    assert [line for line in logged if line not in proc.stderr] == []
    assert [line for line in logged if line in proc.stdout] == []
    assert "TTFT (p50)" in proc.stdout


def _help(args: list[str], columns: int) -> str:
    from typer.testing import CliRunner

    from bench.cli import app

    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=columns, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def _commands():
    import typer.main

    from bench.cli import app

    return typer.main.get_command(app).commands


@pytest.mark.parametrize("columns", [80, 120])
def test_top_level_help_names_every_command_without_cutting_its_summary(columns):
    lines = _help([], columns).split("Commands:", 1)[1].strip().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(_commands())
    assert [line for line in lines if line.rstrip().endswith("...") or len(line) > columns] == []


def _option_blocks(help_text: str) -> dict[str, str]:
    """Each option's help in a command's --help, keyed by its first name (continuation lines joined)."""
    blocks: dict[str, str] = {}
    name = None
    for line in help_text.split("Options:", 1)[1].splitlines():
        if line.startswith("  -"):
            name = line.split()[0].rstrip(",")
            blocks[name] = line
        elif name and line.startswith("    "):
            blocks[name] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in blocks.items()}


def _value_options(command: str) -> list:
    """The options of `command` that take a value and may be left out (flags are off when not given)."""
    return [p for p in _commands()[command].params
            if p.param_type_name == "option" and not p.is_flag and not p.required]


@pytest.mark.parametrize("command", sorted(c for c in _commands() if _value_options(c)))
def test_every_option_states_its_default(command):
    """An option that takes a value says what it is when not given: typer's `[default: ...]` for a fixed
    value, a sentence for one that depends (the recipe's, every card, none)."""
    blocks = _option_blocks(_help([command], 100))
    options = _value_options(command)
    missing = [p.opts[0] for p in options if "default" not in blocks[p.opts[0]].lower()]
    assert missing == []


def test_option_help_lists_recipes_explains_emulation_and_quants_per_backend():
    from bench.config.registry import load_registry

    recipes = sorted(load_registry().recipes)
    plan = _option_blocks(_help(["plan"], 100))
    finetune = _option_blocks(_help(["finetune"], 100))
    run = _option_blocks(_help(["run"], 100))
    for recipe in recipes:
        assert recipe in plan["--finetune"] and recipe in finetune["--recipe"]
    assert "capped to its memory" in run["--gpu"] and "emulated" in run["--gpu"] and "emulated" in finetune["--gpu"]
    for backend, quant in (("vLLM", "fp8"), ("transformers", "nf4"), ("llama.cpp", "q4_k_m")):
        assert backend in run["--quant"] and quant in run["--quant"]
    assert "[default: bf16]" in run["--quant"] and "[default: 8; x>=1]" in run["--batch"]


def test_plan_says_in_words_what_does_not_fit(run_bench):
    """No limit printed as 0: a fine-tune that fits at no length says so, beside the floor it rests on."""
    proc = run_bench("plan", "llama-4-maverick", "--gpu", "4090", "--finetune", "qlora-sft")
    assert proc.returncode == 0, proc.stderr
    assert "no sequence length fits at micro batch 1; no micro batch fits at 2,048 tokens" in proc.stdout
    assert ": 0 tokens" not in proc.stdout and "tokens: 0" not in proc.stdout
    assert "even with experts packed at 4 bits" in " ".join(proc.stdout.split())
    fits = run_bench("plan", "mistral-3b", "--gpu", "4090", "--finetune", "qlora-sft").stdout
    assert "longest sequence that fits at micro batch 1: " in fits and "largest micro batch at 2,048 tokens: " in fits
