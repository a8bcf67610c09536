"""`bench serve` under faults: each becomes a counted error in the record, and the sweep finishes.

A small server (tests/helpers/serve_fault_server.py) answers some requests well and others with an
HTTP 500, a stream cut off mid-answer, or silence past the request timeout; another copy
exits mid-sweep (later requests are refused); and a port with nothing behind it refuses
every connection. The load generator and the record writer are bench's own, unmocked.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from bench.serve.load import Level
from bench.serve.measure import Endpoint, LoadSettings, run_levels, write_serve_record
from bench.serve.server import free_port
from tests.helpers.serve_fault_server import launch

MODEL_REF = {"id": "faulty", "repo": None, "revision": None, "resolved_revision": None, "weights": "unknown"}


@pytest.fixture
def fault_server(tmp_path):
    """Start the fault server with the given behaviours; yields (base URL, process); stopped afterwards."""
    started = []

    def start(behaviours: str, die_after: int | None = None):
        base, process = launch(behaviours, tmp_path, die_after)
        started.append(process)
        return base, process

    yield start
    for process in started:
        process.kill()
        process.wait()


def _settings(levels, timeout_s=1.0, min_requests=8):
    return LoadSettings(levels=levels, prompt_len=8, output_len=4, min_duration_s=0.0, min_requests=min_requests,
                         warmup=0, timeout_s=timeout_s)


def _record(endpoint, settings, outcome, tmp_path):
    return write_serve_record(endpoint=endpoint, settings=settings, outcome=outcome, error=None, model_ref=MODEL_REF,
                              hardware={"target": None, "emulated": False}, results_dir=tmp_path / "results",
                              started=datetime.now(timezone.utc), duration_s=1.0, api_key_env="BENCH_TEST_NO_KEY")


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_500_cut_and_timeout_are_counted_and_the_sweep_finishes(fault_server, tmp_path, api):
    base, _ = fault_server("ok,500,cut,slow")
    endpoint = Endpoint(base, {}, "faulty", {"kind": None})
    settings = LoadSettings(**{**_settings([Level(concurrency=2), Level(concurrency=4)]).__dict__, "api": api})
    started = time.perf_counter()
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    assert time.perf_counter() - started < 20  # the slow requests ended at their 1 s timeout, not at 30 s
    assert record.status == "ok"
    for level in record.details["levels"]:
        kinds = level["errors_by_kind"]
        assert kinds.keys() == {"http-500", "cut", "timeout"}, kinds
        assert level["requests"] >= 8 and level["completed"] + level["errors"] == level["requests"]
        # One request in four of each kind, in the order the server numbers them.
        assert level["completed"] == pytest.approx(level["requests"] / 4, abs=1)
        ok = [r for r in level["requests_detail"] if "error" not in r]
        assert all(r["output_tokens"] == 4 and r["tokens_from"] == "usage" for r in ok)
        assert level["output_tokens_per_s"] == pytest.approx(4 * level["completed"] / level["duration_s"])
    assert record.metrics["errors@c2"].value == record.details["levels"][0]["errors"]
    saved = json.loads((tmp_path / "results" / f"{record.id}.json").read_text())
    assert saved["kind"] == "serve" and saved["details"]["levels"][1]["level"] == "c4"
    # Traffic went to the given server alone, to the API's path.
    paths = {line.split()[0] for line in (tmp_path / "requests.log").read_text().splitlines()}
    assert paths == {"/v1/completions" if api == "completions" else "/v1/chat/completions"}


def test_a_server_dying_mid_sweep_leaves_counted_errors(fault_server, tmp_path):
    base, process = fault_server("ok", die_after=6)
    endpoint = Endpoint(base, {}, "faulty", {"kind": None})
    settings = _settings([Level(concurrency=2), Level(rate=50.0)], min_requests=12)
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    assert process.wait(timeout=5) == 1  # it did die
    first, second = record.details["levels"]
    assert 5 <= first["completed"] <= 6  # a request in flight when it died gets no answer
    assert first["errors"] >= 6 and set(first["errors_by_kind"]) <= {"refused", "cut"}
    assert "refused" in first["errors_by_kind"]
    assert second["completed"] == 0 and second["errors_by_kind"] == {"refused": second["requests"]}
    assert record.status == "ok"  # some requests completed: a measured sweep with its failures counted
    assert any("failed" in note for note in record.notes)


def test_refused_connections_are_counted_and_the_record_says_nothing_completed(tmp_path):
    endpoint = Endpoint(f"http://127.0.0.1:{free_port()}", {}, "nothing", {"kind": None})
    settings = _settings([Level(concurrency=2)], min_requests=4)
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    level = record.details["levels"][0]
    assert level["errors_by_kind"] == {"refused": level["requests"]} and level["requests"] >= 4
    assert record.status == "error" and "no request completed" in record.error
    assert level["ttft_p50_s"] is None and level["output_tokens_per_s"] is None
