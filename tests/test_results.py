"""Records: schema, atomic never-rewriting writes, corrupt files skipped, the pandas view, no tokens."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from bench.results import (Metric, ModelRef, RunRecord, iter_records, load_frame, new_record_id, results_dir,
                           write_record)


def make_record(**overrides) -> RunRecord:
    fields = dict(
        schema_version=1, id=new_record_id("inference", "tiny-llama", datetime(2026, 11, 23, tzinfo=timezone.utc)),
        kind="inference", status="ok", error=None,
        model=ModelRef(id="tiny-llama", repo=None, revision=None, resolved_revision=None, weights="synthetic"),
        config={"batch": 4}, hardware={"device": "cpu", "target": None, "emulated": False},
        software={"python": "3.11"}, metrics={"decode_tokens_per_s": Metric(value=123.5, unit="tokens/s",
                                                                            samples=[120.0, 123.5, 130.0])},
        started_at="2026-11-23T00:00:00+00:00", duration_s=1.5)
    return RunRecord(**{**fields, **overrides})


def test_round_trip_and_contract_fields(tmp_path):
    record = make_record()
    path = write_record(record, tmp_path)
    data = json.loads(path.read_text())
    for key in ("schema_version", "id", "kind", "status", "error", "model", "config", "hardware", "software",
                "metrics", "started_at", "duration_s"):
        assert key in data
    assert data["metrics"]["decode_tokens_per_s"] == {"value": 123.5, "unit": "tokens/s",
                                                      "samples": [120.0, 123.5, 130.0]}
    assert list(iter_records(tmp_path)) == [record]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_record_is_never_rewritten(tmp_path):
    record = make_record()
    path = write_record(record, tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_record(make_record(id=record.id, status="error", error="x"), tmp_path)
    assert path.read_bytes() == before


def test_corrupt_files_are_skipped_with_a_warning(tmp_path, capsys):
    write_record(make_record(), tmp_path)
    (tmp_path / "truncated.json").write_text('{"schema_version": 1, "id": ')
    (tmp_path / "wrong-field.json").write_text(json.dumps({**json.loads(make_record().model_dump_json()),
                                                          "status": "exploded"}))
    records = list(iter_records(tmp_path))
    err = capsys.readouterr().err
    assert len(records) == 1
    assert "truncated.json" in err and "wrong-field.json" in err


def test_frame_has_one_row_per_record_with_metric_columns(tmp_path):
    write_record(make_record(), tmp_path)
    write_record(make_record(id="other", status="oom", error="CUDA out of memory", metrics={}), tmp_path)
    frame = load_frame(tmp_path).set_index("id")
    assert len(frame) == 2
    assert frame.loc["other", "status"] == "oom"
    assert frame["decode_tokens_per_s"].dropna().tolist() == [123.5]


def test_a_token_never_reaches_a_record(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretsecret123")
    with pytest.raises(ValueError, match="HF_TOKEN"):
        write_record(make_record(config={"oops": "hf_secretsecret123"}), tmp_path)
    assert not list(tmp_path.iterdir())


def test_results_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "env"))
    assert results_dir(tmp_path / "flag") == tmp_path / "flag"
    assert results_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BENCH_RESULTS_DIR")
    assert str(results_dir(None)) == "results"
