"""Bad input as data: every command and option with the values users mistype (typos, zero, negative, huge,
wrong types, missing files, wrong encodings, impossible shapes). Each must end before any run with exit
code 2 and one line on stderr, never a traceback or a usage block.

The cases run `bench.cli.main` in this process (what `bench` runs), which keeps ninety of them fast.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import pytest

from tests.helpers.cli import run_main

BAD_CONFIGS = {
    "heads.json": {"model_type": "llama", "hidden_size": 100, "num_attention_heads": 3, "num_hidden_layers": 2,
                   "intermediate_size": 256, "vocab_size": 1000, "max_position_embeddings": 2048},
    "kv.json": {"model_type": "llama", "hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 3,
                "num_hidden_layers": 2, "intermediate_size": 256, "vocab_size": 1000, "max_position_embeddings": 2048},
    "list.json": [1, 2],
    "layers.json": {"model_type": "llama", "hidden_size": 128, "num_attention_heads": 4, "num_hidden_layers": 10**8,
                    "intermediate_size": 256, "vocab_size": 1000, "max_position_embeddings": 2048},
    "wrapper-text.json": {"model_type": "llama4", "text_config": "llama"},
    "type-list.json": {"model_type": ["llama"]},
}
TINY = "tiny-llama --device cpu"
TUNE = "tiny-llama --recipe lora-sft --device cpu"

CASES = [
    # commands, options and arguments that do not exist
    "nocommand", "modles", "models --bogus", "models extra", "gpus --json=maybe", "verdicts --json=x",
    "results --bogus", "run", "sweep", "cite", "compare {d}",
    # plan
    "plan", "plan mistal-3b", "plan mistral-3b --gpu 4099", "plan mistral-3b --quant q3",
    "plan mistral-3b --context 0", "plan mistral-3b --context -5", "plan mistral-3b --context abc",
    "plan mistral-3b --context 4k", "plan mistral-3b --context 99999999999999999999", "plan mistral-3b --batch 0",
    "plan mistral-3b --batch 1e9", "plan mistral-3b --finetune nope", "plan --config {d}/missing.json",
    "plan --config {d}/binary.json", "plan --config {d}/list.json", "plan --config {d}/heads.json",
    "plan --config {d}/kv.json", "plan mistral-3b --config {d}/heads.json", "plan --config {d}",
    "plan --config {d}/layers.json", "plan --config {d}/wrapper-text.json", "plan --config {d}/type-list.json",
    "plan --config {d}/nested.json", "plan --config {d}/fifo.json", "plan --config {d}/zero.json",
    # run
    "run mistal-3b --device cpu", f"run {TINY} --backend vlm", "run tiny-llama --device gpu",
    f"run {TINY} --weights fake", f"run {TINY} --quant q3", f"run {TINY} --batch 0", f"run {TINY} --batch -2",
    f"run {TINY} --batch two", f"run {TINY} --prompt-len -1", f"run {TINY} --output-len 1", f"run {TINY} --context 1",
    f"run {TINY} --max-model-len 0", f"run {TINY} --iterations 0", f"run {TINY} --min-duration -1",
    f"run {TINY} --timeout 0", f"run {TINY} --timeout -1", f"run {TINY} --timeout abc", f"run {TINY} --gpu nope",
    f"run {TINY} --gpu rtx-4090", f"run {TINY} --results-dir {{d}}/afile", "run {d}/remote-code --device cpu",
    "run mistral-3b --weights synthetic --device cpu --backend vllm --quant q4_k_m",
    # finetune
    "finetune tiny-llama --device cpu", "finetune tiny-llama --recipe nope --device cpu", f"finetune {TUNE} --steps 0",
    f"finetune {TUNE} --steps -3", f"finetune {TUNE} --learning-rate -1", f"finetune {TUNE} --learning-rate fast",
    f"finetune {TUNE} --dataset {{d}}/missing.jsonl", f"finetune {TUNE} --dataset {{d}}/latin1.jsonl",
    f"finetune {TUNE} --dataset {{d}}/notjson.jsonl", f"finetune {TUNE} --dataset {{d}}/scalar.jsonl",
    f"finetune {TUNE} --dataset {{d}}/norows.jsonl", f"finetune {TUNE} --dataset {{d}}/wrongfields.jsonl",
    f"finetune {TUNE} --dataset builtin:nope", "finetune tiny-llama --recipe lora-sft --device gpu",
    f"finetune {TUNE} --timeout 0", f"finetune {TUNE} --results-dir {{d}}/afile",
    # eval
    "eval tiny-llama --device cpu", "eval tiny-llama --tasks smoke --limit 0 --device cpu",
    "eval tiny-llama --tasks smoke --limit -1 --device cpu", "eval tiny-llama --tasks smoke --num-fewshot -1 --device cpu",
    "eval tiny-llama --tasks smoke --backend x --device cpu", "eval tiny-llama --tasks smoke --device tpu",
    "eval mistal-3b --tasks smoke --device cpu", "eval tiny-llama --tasks arc_challeng --device cpu",
    # readers
    "report --out {d}/afile", "cite nosuchclaim", "compare {d}/missing {d}", "compare {d} {d}/missing",
    "verdicts --results-dir {d}/missing", "results --results-dir {d}/missing", "report --results-dir {d}/missing",
    "cite mistral-3b-fits-4gb-kv --results-dir {d}/missing", "report --results-dir {d}/resdir --out {d}/resdir",
    "report --results-dir {d}/resdir --out {d}/resdir/site",
    # sweep
    "sweep {d}/missing.yaml", "sweep {d}/latin1.yaml", "sweep {d}/broken.yaml", "sweep {d}/list.yaml",
    "sweep {d}/unknown-model.yaml", "sweep {d}/bad-option.yaml", "sweep configs/sweeps/smoke.yaml --executor x",
    "sweep configs/sweeps/smoke.yaml --only-gpu nope", "sweep configs/sweeps/smoke.yaml --results-dir {d}/afile",
    "sweep {d}/huge-matrix.yaml", "sweep {d}/negative-context.yaml", "sweep {d}/inf-timeout.yaml",
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-input")
    for name, content in BAD_CONFIGS.items():
        (d / name).write_text(json.dumps(content))
    (d / "binary.json").write_bytes(b"\xff\xfe\x00{")
    (d / "afile").write_text("a file, not a folder")
    (d / "latin1.jsonl").write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    (d / "notjson.jsonl").write_text('{"prompt": [], "completion": []}\n{not json\n')
    (d / "scalar.jsonl").write_text("42\n")
    (d / "norows.jsonl").write_text("\n\n")
    (d / "wrongfields.jsonl").write_text('{"text": "hello"}\n')
    (d / "latin1.yaml").write_bytes("id: caf\u00e9\n".encode("latin-1"))
    (d / "broken.yaml").write_text("id: x\nmatrix: [\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "unknown-model.yaml").write_text("id: x\ndevice: cpu\nmatrix:\n  - models: [tiny-lama]\n")
    (d / "bad-option.yaml").write_text("id: x\ndevice: cpu\nmatrix:\n  - models: [tiny-llama]\n"
                                       "    options: {batch: 0}\n")
    (d / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(d / "fifo.json")
    (d / "zero.json").symlink_to("/dev/zero")
    (d / "resdir").mkdir()
    models, gpus, quants = (", ".join([name] * n) for name, n in (("tiny-llama", 100), ("rtx-4090", 100),
                                                                  ("bf16", 1000)))
    (d / "huge-matrix.yaml").write_text(f"id: x\nmatrix:\n  - models: [{models}]\n    gpus: [{gpus}]\n"
                                        f"    quants: [{quants}]\n")  # 10^7 cells in 10 KB
    (d / "negative-context.yaml").write_text("id: x\ndevice: cpu\nmatrix:\n  - models: [tiny-llama]\n"
                                             "    options: {context: -5}\n")
    (d / "inf-timeout.yaml").write_text("id: x\ndevice: cpu\nmatrix:\n  - models: [tiny-llama]\n"
                                        "    options: {timeout: .inf}\n")
    remote = d / "remote-code"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({**BAD_CONFIGS["kv.json"], "num_key_value_heads": 2,
                                                    "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}))
    return d


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(case, bad_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("BENCH_DEBUG", raising=False)
    code, err = run_main(shlex.split(case.format(d=bad_files)), monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())  # nothing ran


def test_plain_bench_prints_its_help():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bench.cli"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Commands:" in proc.stderr  # the help, not an error line: nothing was typed
