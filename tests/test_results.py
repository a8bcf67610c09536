"""Records: schema, atomic never-rewriting writes, corrupt files skipped, the pandas view, no tokens."""

from __future__ import annotations

import json
import re
import stat
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from bench.records.frame import load_frame
from bench.records.schema import Metric, ModelRef, RunRecord, new_record_id
from bench.records.store import iter_records, results_dir, write_record

SECTION_7_FIELDS = ("schema_version", "id", "kind", "status", "error", "model", "config", "hardware", "software",
                    "metrics", "started_at", "duration_s")


def make_record(**overrides) -> RunRecord:
    fields = dict(
        schema_version=1, id=new_record_id("inference", "tiny-llama", datetime(2026, 11, 23, tzinfo=timezone.utc)),
        kind="inference", status="ok", error=None,
        model=ModelRef(id="tiny-llama", repo=None, revision=None, resolved_revision=None, weights="synthetic"),
        config={"batch": 4}, hardware={"device_name": "cpu", "target": None, "emulated": False},
        software={"python": "3.11"},
        metrics={"decode_tokens_per_s": Metric(value=123.5, unit="tokens/s", samples=[120.0, 123.5, 130.0]),
                 "adapter_reloaded": Metric(value=True, unit=""),
                 "scores": Metric(value={"smoke": {"acc": 0.5}}, unit="")},
        started_at="2026-11-23T00:00:00+00:00", duration_s=1.5)
    return RunRecord(**{**fields, **overrides})


def test_round_trip_and_contract_fields(tmp_path):
    record = make_record()
    path = write_record(record, tmp_path)
    data = json.loads(path.read_text())
    assert set(SECTION_7_FIELDS) <= set(data)
    assert set(data["model"]) >= {"id", "repo", "revision", "resolved_revision", "weights"}
    assert data["metrics"]["decode_tokens_per_s"] == {"value": 123.5, "unit": "tokens/s",
                                                      "samples": [120.0, 123.5, 130.0]}
    assert all("unit" in metric for metric in data["metrics"].values())
    assert list(iter_records(tmp_path)) == [record]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the team, not mkstemp's 0600


def test_record_ids_sort_by_utc_start_and_are_unique():
    local = datetime(2026, 11, 23, 15, 45, 1, tzinfo=timezone(timedelta(hours=1)))
    ids = {new_record_id("inference", "org/Model 7B", local) for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"20261123T144501Z-inference-org-Model-7B-[0-9a-f]{6}", i) for i in ids)
    later = new_record_id("eval", "a", datetime(2026, 11, 23, 14, 45, 2, tzinfo=timezone.utc))
    assert max(ids) < later


def test_started_at_must_be_utc():
    with pytest.raises(ValidationError, match="started_at"):
        make_record(started_at="2026-11-23T01:00:00+01:00")
    assert make_record(started_at="2026-11-23T00:00:00Z").started_at.endswith("Z")


def test_a_record_is_never_rewritten(tmp_path):
    record = make_record()
    path = write_record(record, tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_record(make_record(id=record.id, status="error", error="x"), tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_corrupt_files_are_skipped_with_one_warning_each(tmp_path, capsys):
    good = write_record(make_record(), tmp_path)
    (tmp_path / "truncated.json").write_text('{"schema_version": 1, "id": ')
    (tmp_path / "wrong-field.json").write_text(json.dumps({**json.loads(good.read_text()), "status": "exploded"}))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / ".run.abc123.tmp").write_text("{")  # a write in progress
    (tmp_path / ".half-written.json").write_text("{")
    records = list(iter_records(tmp_path))
    lines = capsys.readouterr().err.splitlines()
    assert [r.id for r in records] == [good.stem]
    assert len(lines) == 3 and all(line.startswith("warning: skipping ") for line in lines)
    for name in ("truncated.json", "wrong-field.json", "binary.json"):
        assert sum(name in line for line in lines) == 1
    assert any("wrong-field.json" in line and "status" in line for line in lines)


def test_frame_has_one_row_per_record_with_metric_columns(tmp_path):
    write_record(make_record(), tmp_path)
    write_record(make_record(id="other", status="oom", error="CUDA out of memory", metrics={}), tmp_path)
    frame = load_frame(tmp_path).set_index("id")
    assert len(frame) == 2
    assert frame.loc["other", "status"] == "oom"
    assert frame.loc["other", "model"] == "tiny-llama" and frame.loc["other", "device_name"] == "cpu"
    assert frame["decode_tokens_per_s"].dropna().tolist() == [123.5]
    assert frame["adapter_reloaded"].dropna().tolist() == [True]  # a flag is a column too
    assert "scores" not in frame.columns  # not a number: it stays in the record


def test_an_empty_directory_gives_an_empty_frame_with_the_columns(tmp_path):
    frame = load_frame(tmp_path / "none-yet")
    assert frame.empty and {"id", "kind", "status", "model", "started_at"} <= set(frame.columns)


@pytest.mark.parametrize("variable", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_a_token_from_the_environment_never_reaches_a_record(tmp_path, monkeypatch, variable):
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv(variable, "hf_secretsecret123")
    with pytest.raises(ValueError, match=variable) as refused:
        write_record(make_record(error="401 for Bearer hf_secretsecret123"), tmp_path / "results")
    assert "hf_secretsecret123" not in str(refused.value)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_a_stored_login_token_never_reaches_a_record(tmp_path, monkeypatch):
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "token").write_text("hf_storedtoken456\n")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "token"))
    with pytest.raises(ValueError, match="token"):
        write_record(make_record(config={"hub": {"token": "hf_storedtoken456"}}), tmp_path / "results")


def test_a_short_token_value_does_not_block_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf")  # too short to be a token; it appears everywhere
    assert write_record(make_record(), tmp_path).exists()


def test_results_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "env"))
    assert results_dir(tmp_path / "flag") == tmp_path / "flag"
    assert results_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BENCH_RESULTS_DIR")
    assert str(results_dir(None)) == "results"


def test_published_subfolders_are_read_and_hidden_ones_are_not(tmp_path, capsys):
    """A fresh checkout's report shows results/gpu/ and results/cpu/; a check's JSON Lines are not records."""
    top, gpu = make_record(id="r-top"), make_record(id="r-gpu")
    write_record(top, tmp_path)
    write_record(gpu, tmp_path / "gpu")
    write_record(make_record(id="r-hidden"), tmp_path / ".partial")
    (tmp_path / "gpu" / "checks").mkdir()
    (tmp_path / "gpu" / "checks" / "cap-checks.jsonl").write_text('{"check": "emulation-cap"}\n')
    assert sorted(r.id for r in iter_records(tmp_path)) == ["r-gpu", "r-top"]
    assert "warning" not in capsys.readouterr().err


def test_a_future_schema_is_skipped_with_a_warning(tmp_path, capsys):
    path = write_record(make_record(), tmp_path)
    future = {**json.loads(path.read_text()), "id": "from-the-future", "schema_version": 999}
    (tmp_path / "from-the-future.json").write_text(json.dumps(future))
    assert [r.id for r in iter_records(tmp_path)] == [path.stem]
    assert "schema_version 999 is not one this bench reads" in capsys.readouterr().err


@pytest.mark.parametrize("bad_id", ["../../../src/pwn", "a/b", ".hidden", "", "x" * 201, "caf\u00e9"])
def test_an_id_must_be_a_plain_file_name(bad_id):
    with pytest.raises(ValidationError):
        make_record(id=bad_id)


def test_a_record_whose_id_is_not_its_file_name_is_skipped(tmp_path, capsys):
    path = write_record(make_record(), tmp_path)
    path.rename(tmp_path / "renamed.json")
    assert list(iter_records(tmp_path)) == []
    assert "is not its file name" in capsys.readouterr().err


def test_a_refused_write_goes_to_the_fallback_place_and_says_where(tmp_path, monkeypatch, capsys):
    from bench.records.store import saved_path, write_record_or_fallback

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    blocked = tmp_path / "results"
    blocked.write_text("a file where the folder should be")
    record = make_record()
    path = write_record_or_fallback(record, blocked)
    assert path == tmp_path / "state" / "bench" / "unsaved-records" / f"{record.id}.json"
    assert saved_path(record.id, blocked) == path
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: could not write the record") and str(path) in line


def test_the_first_writability_check_makes_no_folder(tmp_path):
    from bench.records.store import check_writable

    target = tmp_path / "a" / "results"
    check_writable(target, create=False)
    assert not (tmp_path / "a").exists()  # bad input found after it leaves nothing behind
    check_writable(target)
    assert target.is_dir()


def test_bench_results_lists_traces_with_their_peak_and_parts(tmp_path, monkeypatch):
    """A trace's table shows the traced peak and its parts, from the record's own metrics."""
    import shutil

    from bench.report.record_text import results_table
    from tests.helpers.paths import ROOT

    source = sorted((ROOT / "results" / "trace").glob("*-trace-mistral-small-22b-*.json"))[0]
    shutil.copy(source, tmp_path / source.name)
    record = next(iter_records(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")  # one line per record
    table = results_table(tmp_path, json_out=False)
    row = next(line for line in table.splitlines() if line.startswith(record.id))
    assert table.startswith("trace record") and "traced peak GiB" in table
    assert f"{record.metrics['traced_peak_bytes'].value / 2**30:.2f}" in row.split()
    assert f"{record.metrics['traced_parameters_bytes'].value / 2**30:.2f}" in row.split()
