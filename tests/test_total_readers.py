"""Every reader is total, and bounds come before work: a record of a wrong shape, a special file, a config of
impossible size or a sweep of ten million cells each end in one warning or one line, never a crash or a hang."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench.config.hfconfig import MAX_LAYERS, load_hf_config
from bench.errors import UserError
from bench.records.schema import new_record
from bench.records.store import MAX_RECORD_BYTES, iter_record_files, read_record, write_record
from tests.helpers.cli import run_main
from tests.helpers.paths import ROOT

STARTED = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
LEVEL = {"level": "c1", "concurrency": 1, "requests": 8, "completed": 8, "errors": 0, "ttft_p50_s": 0.2,
         "ttft_p90_s": 0.3, "ttft_p99_s": 0.4, "itl_p50_s": 0.01, "tpot_p50_s": 0.02, "tpot_p90_s": 0.03,
         "e2e_p50_s": 1.0, "output_tokens_per_s": 40.0, "requests_per_s": 2.0, "goodput_requests_per_s": 1.5}


def _metric(value, unit: str) -> dict:
    return {"value": value, "unit": unit, "samples": None}


def full_record(record_id: str):
    """A record holding every free-form field a reader computes with, each of the type bench writes."""
    return new_record(
        record_id=record_id, kind="inference", status="ok", error=None,
        model={"id": "mistral-3-small", "repo": "org/repo", "revision": "main", "resolved_revision": None,
               "weights": "real"},
        config={"scenario": {"backend": "vllm", "batch": 8, "prompt_len": 128, "output_len": 64, "context": 4096,
                             "engine": {"quant": "nf4", "max_model_len": 8192}},
                "recipe": {"id": "qlora-sft", "method": "qlora", "quant": "nf4", "steps": 10},
                "eval": {"tasks": ["arc_challenge"], "limit": None}},
        hardware={"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "target": "rtx-4090", "emulated": True},
        software={"bench": "0.1.0", "bench_commit": "f" * 40},
        metrics={"decode_tokens_per_s": _metric(60.0, "tokens/s"), "peak_memory_bytes": _metric(17 * 2**30, "bytes"),
                 "ttft_p90_s@c1": _metric(0.3, "s"), "limit": _metric(None, "docs"),
                 "scores": _metric({"arc": {"acc": 0.5, "acc_stderr": None}}, "score")},
        details={"engine": {"engine": "vllm", "weights_format": "nf4", "n_ctx": 8192, "repack": False,
                            "kv_buffer_bytes": 2**20, "memory_accounting": {"weights_bytes": 2**30}},
                 "levels": [LEVEL], "memory": {"peak_memory_bytes": 2**30}, "labels": {"sweep_cell": "abc"}},
        started=STARTED, duration_s=60.0)


# (where in the record's JSON, the wrong value, the field the warning names)
MISTYPED = [
    (("details", "engine"), "vllm", "details.engine"),
    (("details", "engine", "n_ctx"), "4096", "details.engine.n_ctx"),
    (("details", "engine", "weights_format"), 4, "details.engine.weights_format"),
    (("details", "engine", "repack"), "no", "details.engine.repack"),
    (("details", "engine", "memory_accounting"), [], "details.engine.memory_accounting"),
    (("details", "engine", "memory_accounting", "weights_bytes"), "1 GiB",
     "details.engine.memory_accounting.weights_bytes"),
    (("details", "engine", "kv_buffer_bytes"), [1], "details.engine.kv_buffer_bytes"),
    (("details", "levels"), {"c1": {}}, "details.levels"),
    (("details", "levels", 0), "c1", "details.levels.0"),
    (("details", "levels", 0, "level"), 1, "details.levels.0.level"),
    (("details", "levels", 0, "errors"), "0", "details.levels.0.errors"),
    (("details", "levels", 0, "output_tokens_per_s"), "fast", "details.levels.0.output_tokens_per_s"),
    (("details", "memory"), 5, "details.memory"),
    (("details", "memory", "peak_memory_bytes"), "big", "details.memory.peak_memory_bytes"),
    (("details", "labels"), "cell", "details.labels"),
    (("details", "labels", "sweep_cell"), ["a"], "details.labels.sweep_cell"),
    (("config", "scenario"), "vllm", "config.scenario"),
    (("config", "scenario", "engine"), None, "config.scenario.engine"),
    (("config", "scenario", "engine", "quant"), 4, "config.scenario.engine.quant"),
    (("config", "scenario", "batch"), "8", "config.scenario.batch"),
    (("config", "scenario", "batch"), None, "config.scenario.batch"),
    (("config", "scenario", "context"), 4096.5, "config.scenario.context"),
    (("config", "recipe"), ["qlora"], "config.recipe"),
    (("config", "recipe", "id"), 7, "config.recipe.id"),
    (("config", "eval", "tasks"), "arc", "config.eval.tasks"),
    (("hardware", "target"), ["rtx-4090"], "hardware.target"),
    (("hardware", "emulated"), "yes", "hardware.emulated"),
    (("hardware", "device_name"), {"name": "H100"}, "hardware.device_name"),
    (("hardware", "target"), None, "hardware"),  # emulated, but capped to no card
    (("software", "bench_commit"), 123, "software.bench_commit"),
    (("metrics", "decode_tokens_per_s", "value"), None, "metrics.decode_tokens_per_s.value"),
    (("metrics", "peak_memory_bytes", "value"), {"gib": 17}, "metrics.peak_memory_bytes.value"),
    (("metrics", "ttft_p90_s@c1", "value"), None, "metrics.ttft_p90_s@c1.value"),
    (("metrics", "scores", "value"), [0.5], "metrics.scores.value"),
    (("metrics", "scores", "value", "arc"), 0.5, "metrics.scores.value.arc"),
    (("metrics", "scores", "value", "arc", "acc"), "0.5", "metrics.scores.value.arc.acc"),
]


def mistyped_copy(raw: dict, where: tuple, value) -> dict:
    """`raw` with the value at `where` replaced."""
    out = copy.deepcopy(raw)
    holder = out
    for key in where[:-1]:
        holder = holder[key]
    holder[where[-1]] = value
    return out


@pytest.mark.parametrize(("where", "value", "named"), MISTYPED, ids=[f"{m[2]}={m[1]!r}" for m in MISTYPED])
def test_a_mistyped_free_form_field_skips_that_record_with_one_warning_naming_it(tmp_path, capsys, where, value,
                                                                                named):
    write_record(full_record("good"), tmp_path)
    raw = json.loads((tmp_path / "good.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps({**mistyped_copy(raw, where, value), "id": "bad"}))
    assert [r.id for _, r in iter_record_files(tmp_path)] == ["good"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: skipping {tmp_path / 'bad.json'}"), lines
    assert f"({named}" in lines[0], lines[0]  # the schema's own union errors add the member tried


def test_the_records_bench_publishes_all_pass_the_shape_check():
    files = sorted((ROOT / "results").rglob("*.json"))
    assert files and [read_record(p).id for p in files] == [p.stem for p in files]


def test_special_files_and_links_are_skipped_unread(tmp_path, capsys):
    results, outside = tmp_path / "results", tmp_path / "outside"
    write_record(full_record("good"), results)
    write_record(full_record("elsewhere"), outside)
    os.mkfifo(results / "fifo.json")  # opening it for reading would wait for a writer forever
    (results / "zero.json").symlink_to("/dev/zero")  # reading it would never end
    (results / "elsewhere.json").symlink_to(outside / "elsewhere.json")  # a valid record, but not this folder's
    (results / "again.json").symlink_to(results / "good.json")  # the same record under a second name
    (results / "a.json").symlink_to(results / "b.json")  # a loop of links
    (results / "b.json").symlink_to(results / "a.json")
    with open(results / "huge.json", "wb") as handle:  # sparse: no disk, but over the cap
        handle.truncate(MAX_RECORD_BYTES + 1)
    started = time.monotonic()
    read = [(p.name, r.id) for p, r in iter_record_files(results)]
    assert time.monotonic() - started < 5
    assert read == [("good.json", "good")]
    reasons = {Path(line.split()[2].rstrip(":")).name: line for line in capsys.readouterr().err.splitlines()}
    assert set(reasons) == {"fifo.json", "zero.json", "elsewhere.json", "again.json", "a.json", "b.json",
                            "huge.json"}
    assert "not a regular file" in reasons["fifo.json"]
    assert "a link to /dev/zero" in reasons["zero.json"]
    assert f"a link to {outside / 'elsewhere.json'}" in reasons["elsewhere.json"]
    assert "over the 64 MiB limit" in reasons["huge.json"]


@pytest.mark.parametrize("command", [["verdicts"], ["results"], ["cite", "mistral-3b-fits-4gb-kv"],
                                     ["report", "--out", "{tmp}/site"]])
def test_a_results_folder_variable_naming_a_file_is_refused(tmp_path, monkeypatch, capsys, command):
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "afile"))
    code, err = run_main([part.format(tmp=tmp_path) for part in command], monkeypatch, capsys)
    assert code == 2 and err.strip() == f"error: BENCH_RESULTS_DIR {tmp_path / 'afile'}: a file, not a folder"


@pytest.mark.parametrize("inside", ["", "site", "deep/site"])
def test_a_report_inside_the_results_folder_is_refused_before_any_copy(tmp_path, monkeypatch, capsys, inside):
    results = tmp_path / "results"
    write_record(full_record("good"), results)
    before = sorted(p.relative_to(results).as_posix() for p in results.rglob("*"))
    code, err = run_main(["report", "--results-dir", str(results), "--out", str(results / inside)], monkeypatch,
                         capsys)
    assert code == 2 and err.count("\n") == 1 and "inside the results folder" in err, err
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*")) == before


def config_with(**fields) -> dict:
    base = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
            "max_position_embeddings": 131072}
    return {**base, **fields}


@pytest.mark.parametrize(("field", "value"), [
    ("num_hidden_layers", 10**8), ("num_hidden_layers", MAX_LAYERS + 1), ("hidden_size", 1_000_001 * 32),
    ("vocab_size", 10**7 + 1), ("intermediate_size", 10**7 + 1), ("max_position_embeddings", 10**9 + 1),
    ("num_attention_heads", 100_001), ("sliding_window", 10**12), ("layer_types", ["full_attention"] * 1001)])
def test_a_config_beyond_any_real_model_is_refused_at_once(tmp_path, field, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_with(**{field: value})))
    started = time.monotonic()
    with pytest.raises(UserError, match=field):
        load_hf_config(path)
    assert time.monotonic() - started < 1


def test_the_bounds_admit_the_largest_shapes_at_their_limits(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_with(model_type="mixtral", num_hidden_layers=MAX_LAYERS, hidden_size=65536,
                                           num_attention_heads=512, num_key_value_heads=8, vocab_size=10**7,
                                           num_local_experts=10**4, num_experts_per_tok=8,
                                           max_position_embeddings=10**9)))
    cfg = load_hf_config(path)
    assert (cfg.num_hidden_layers, cfg.num_local_experts, cfg.vocab_size) == (MAX_LAYERS, 10**4, 10**7)


@pytest.mark.parametrize(("content", "said"), [
    ({"model_type": "llama4", "text_config": "llama"}, "text_config must be an object, not str"),
    ({"model_type": "mistral3", "text_config": [1, 2]}, "text_config must be an object, not list"),
    ({"model_type": ["llama"]}, "model_type must be a string, not list"),
    ({"model_type": {"llama": 1}}, "model_type must be a string, not dict"),
])
def test_a_wrapper_or_model_type_of_the_wrong_type_is_one_line(tmp_path, content, said):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match=said):
        load_hf_config(path)


def test_a_config_that_is_no_file_or_nested_without_end_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    for name, said in (("fifo.json", "not a regular file"), ("zero.json", "not a regular file"),
                       ("deep.json", "nested too deeply")):
        with pytest.raises(UserError, match=said):
            load_hf_config(tmp_path / name)


def test_a_sweep_of_ten_million_cells_is_refused_before_expanding(tmp_path, registry):
    from bench.jobs.sweep import MAX_CELLS, load_sweep

    models = ", ".join(["tiny-llama"] * 100)
    gpus = ", ".join(["rtx-4090"] * 100)
    backends = ", ".join(["vllm"] * 100)
    quants = ", ".join(["bf16"] * 10)
    path = tmp_path / "huge.yaml"
    path.write_text(f"id: huge\nmatrix:\n  - models: [{models}]\n    gpus: [{gpus}]\n    backends: [{backends}]\n"
                    f"    quants: [{quants}]\n")
    assert path.stat().st_size < 4096
    started = time.monotonic()
    with pytest.raises(UserError, match=f"10,000,000 cells, more than the {MAX_CELLS:,}"):
        load_sweep(path, registry)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("option", "said"), [("context: -5", "context"), ("context: 1", "context"),
                                              ("timeout: .inf", "timeout"), ("min_duration: .nan", "min_duration"),
                                              ("learning_rate: 0", "learning_rate")])
def test_a_sweep_option_out_of_range_is_refused(tmp_path, registry, option, said):
    from bench.jobs.sweep import load_sweep

    path = tmp_path / "bad.yaml"
    path.write_text(f"id: x\ndevice: cpu\nmatrix:\n  - models: [tiny-llama]\n    options: {{{option}}}\n")
    with pytest.raises(UserError, match=f"options.{said}"):
        load_sweep(path, registry)


def test_a_ctrl_c_as_the_report_ends_is_exit_0_or_130_with_one_line_never_a_traceback(tmp_path):
    """A Ctrl-C just after the report's line: either the command was still returning (130 and the one line) or
    Python was tearing the process down, where it used to land in a finalizer ("Exception ignored ...
    KeyboardInterrupt", exit 0) or, after Python restored the default handler, kill the process with no line
    (-2). The teardown now ignores it: the report is whole, and the exit says so."""
    (tmp_path / "results").mkdir()
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "report", "--out", str(tmp_path / f"site{attempt}"),
                                 "--results-dir", str(tmp_path / "results")], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("wrote ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        said = [line for line in err.splitlines() if line.strip()]
        assert (proc.returncode, said) in ((0, []), (130, ["error: interrupted; records written before stay as they "
                                                           "are"])), (proc.returncode, err)
        assert (tmp_path / f"site{attempt}" / "index.html").is_file()


# `bench report` with its record reader held after the first record until a Ctrl-C comes: the signal lands while
# the report works, however fast the machine reads (a timed sleep in the test raced the report on a quick one).
HELD_REPORT = """
import sys, time
import bench.records.store as store
read = store.iter_record_files
def held(directory):
    for count, found in enumerate(read(directory)):
        if count == 1:
            print("reading", file=sys.stderr, flush=True)
            time.sleep(120)
        yield found
store.iter_record_files = held
from bench.cli import main
sys.argv = ["bench", "report", "--out", sys.argv[1], "--results-dir", sys.argv[2]]
main()
"""


def test_a_ctrl_c_while_the_report_works_is_exit_130_and_one_line(tmp_path):
    results = tmp_path / "results"
    for i in range(3):
        write_record(full_record(f"r{i:03d}"), results)
    proc = subprocess.Popen([sys.executable, "-c", HELD_REPORT, str(tmp_path / "site"), str(results)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr.readline().strip() == "reading"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "wrote" not in out, (out, err)
    assert err.strip() == "error: interrupted; records written before stay as they are"
    assert not (tmp_path / "site" / "index.html").exists()
