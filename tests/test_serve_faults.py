"""`bench serve` under faults: each becomes a counted error in the record, and the sweep finishes.

A small server (tests/helpers/serve_fault_server.py) answers some requests well and others with an
HTTP 500, a stream cut off mid-answer, silence past the request timeout, a malformed chunk, impossible
usage counts, an endless line, endless empty deltas, a byte every 2 s, or an echo of the API key;
another copy exits mid-sweep (later requests are refused); and a port with nothing behind it refuses
every connection. Its discovery endpoints (`/v1/models`, `/version`, `/tokenize`) can be malformed or
slow too. The load generator, the record writer and the CLI are bench's own, unmocked. Each test is a
row of the fault-injection table (tests/helpers/fault_table.py): records lost and processes left are counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from urllib.parse import quote

import psutil
import pytest

from bench.errors import UserError
from bench.records.schema import RECORD_ID, new_record, new_record_id
from bench.records.store import SecretInRecord, write_record
from bench.serve.load import Level
from bench.serve.measure import Endpoint, LoadSettings, RecordRefused, probe, run_levels, write_serve_record
from bench.serve.prompts import server_counter
from bench.serve.server import free_port
from tests.helpers.faults import valid_records
from tests.helpers.paths import ROOT
from tests.helpers.serve_fault_server import launch

MODEL_REF = {"id": "faulty", "repo": None, "revision": None, "resolved_revision": None, "weights": "unknown"}
PEAK_RSS_BOUND_MB = 200  # bench's whole process against an endless line; about 55-75 MB measured
DEADLINE_MARGIN_S = 1.0  # past a discovery deadline, in process
START_MARGIN_S = 6.0  # past a deadline for a fresh `bench` process (interpreter and imports)


@pytest.fixture
def fault_server(tmp_path):
    """Start the fault server with the given behaviours; yields (base URL, process); stopped afterwards."""
    started = []

    def start(behaviours: str, die_after: int | None = None, **options: str):
        base, process = launch(behaviours, tmp_path, die_after, **options)
        started.append(process)
        return base, process

    yield start
    for process in started:
        process.kill()
        process.wait()


def _settings(levels, timeout_s=1.0, min_requests=8, api="completions"):
    return LoadSettings(levels=levels, api=api, prompt_len=8, output_len=4, min_duration_s=0.0,
                        min_requests=min_requests, warmup=0, timeout_s=timeout_s)


def _record(endpoint, settings, outcome, tmp_path, api_key_env="BENCH_TEST_NO_KEY"):
    return write_serve_record(endpoint=endpoint, settings=settings, outcome=outcome, error=None, model_ref=MODEL_REF,
                              hardware={"target": None, "emulated": False}, results_dir=tmp_path / "results",
                              started=datetime.now(timezone.utc), duration_s=1.0, api_key_env=api_key_env)


_EARLIER_CHILDREN: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before_the_test():
    """What runs below this test process before the test starts (an earlier test's engine helpers, a
    resource tracker) is not this test's to count."""
    _EARLIER_CHILDREN.clear()
    _EARLIER_CHILDREN.update(p.pid for p in psutil.Process().children(recursive=True))


def _stray_children(servers) -> int:
    """Processes this test process has below it besides the fault servers and what ran before the test:
    what an in-process sweep left."""
    keep = {process.pid for process in servers} | _EARLIER_CHILDREN
    return len([p for p in psutil.Process().children(recursive=True) if p.pid not in keep and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE])


# Starts bench from a small process and reports bench's own peak RSS (KiB). Linux carries a process's peak
# across exec from the memory it was forked with, so bench forked straight from this test process (hundreds of
# MB once engines are imported) would report this process's size, not its own.
_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def _bench(tmp_path, *args, env=None, timeout_s=120.0):
    """`bench ARGS` in its own session; (exit code, stdout, stderr, peak RSS in MB, wall s, processes left in
    its session). The peak is the kernel's for bench's process (its rusage, through a small launcher), not a
    sample."""
    out, err, peak = tmp_path / "bench.out", tmp_path / "bench.err", tmp_path / "bench.maxrss"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(peak), sys.executable, "-m",
                                    "bench.cli", *args], cwd=ROOT, stdout=stdout, stderr=stderr,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    while (done := os.wait4(process.pid, os.WNOHANG))[0] == 0:
        if time.perf_counter() - started > timeout_s:
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.02)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(done[1])
    left = [p.pid for p in psutil.process_iter() if _session(p.pid) == process.pid]
    peak_mb = int(peak.read_text()) / 1024 if peak.exists() else float("inf")
    return process.returncode, out.read_text(), err.read_text(), peak_mb, wall, len(left)


def _two_requests(tmp_path, base, fault):
    """`bench serve URL` at one user for two short requests, counted in the fault table's row:
    (exit code, stderr, wall s, processes left, the records it wrote)."""
    code, _, err, _, wall, left = _bench(
        tmp_path, "serve", base, "--concurrency", "1", "--min-requests", "2", "--duration", "0", "--warmup", "0",
        "--prompt-len", "8", "--output-len", "4", "--timeout", "2", "--results-dir", str(tmp_path / "results"))
    records = valid_records(tmp_path / "results")
    fault.lost_records, fault.leftover_processes = 1 - len(records), left
    return code, err, wall, left, records


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_500_cut_and_timeout_are_counted_and_the_sweep_finishes(fault_server, tmp_path, api, fault):
    base, process = fault_server("ok,500,cut,slow")
    endpoint = Endpoint(base, {}, "faulty", {"kind": None})
    settings = _settings([Level(concurrency=2), Level(concurrency=4)], api=api)
    started = time.perf_counter()
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    fault.lost_records = 1 - len(valid_records(tmp_path / "results"))
    fault.leftover_processes = _stray_children([process])
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
    paths = {line.split()[0] for line in (tmp_path / "requests.log").read_text().splitlines()
             if not line.startswith("/health")}
    assert paths == {"/v1/completions" if api == "completions" else "/v1/chat/completions"}
    assert fault.lost_records == 0 and fault.leftover_processes == 0


def test_a_server_dying_mid_sweep_leaves_counted_errors(fault_server, tmp_path, fault):
    base, process = fault_server("ok", die_after=6)
    endpoint = Endpoint(base, {}, "faulty", {"kind": None})
    settings = _settings([Level(concurrency=2), Level(rate=50.0)], min_requests=12)
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    fault.lost_records = 1 - len(valid_records(tmp_path / "results"))
    assert process.wait(timeout=5) == 1  # it did die
    fault.leftover_processes = _stray_children([process])
    first, second = record.details["levels"]
    assert 5 <= first["completed"] <= 6  # a request in flight when it died gets no answer
    assert first["errors"] >= 6 and set(first["errors_by_kind"]) <= {"refused", "cut"}
    assert "refused" in first["errors_by_kind"]
    assert second["completed"] == 0 and second["errors_by_kind"] == {"refused": second["requests"]}
    assert record.status == "ok"  # some requests completed: a measured sweep with its failures counted
    assert any("failed" in note for note in record.notes)
    assert fault.lost_records == 0 and fault.leftover_processes == 0


def test_refused_connections_are_counted_and_the_record_says_nothing_completed(tmp_path, fault):
    endpoint = Endpoint(f"http://127.0.0.1:{free_port()}", {}, "nothing", {"kind": None})
    settings = _settings([Level(concurrency=2)], min_requests=4)
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    fault.lost_records = 1 - len(valid_records(tmp_path / "results"))
    level = record.details["levels"][0]
    assert level["errors_by_kind"] == {"refused": level["requests"]} and level["requests"] >= 4
    assert record.status == "error" and "no request completed" in record.error
    assert level["ttft_p50_s"] is None and level["output_tokens_per_s"] is None
    assert fault.lost_records == 0


# Each hostile answer and the error kind its request is counted as (docs/metrics.md, "Serving").
HOSTILE = {"data-null": "malformed", "data-5": "malformed", "data-list": "malformed", "choices-5": "malformed",
           "usage-list": "malformed", "html": "malformed", "usage-str": "bad-usage", "usage-negative": "bad-usage",
           "usage-excess": "bad-usage", "endless-line": "oversized", "empty-deltas": "oversized",
           "loris": "timeout", "echo": "error"}


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("behaviour", list(HOSTILE))
def test_a_hostile_answer_is_an_error_of_its_kind_and_the_sweep_is_recorded(fault_server, tmp_path, behaviour,
                                                                             api, fault):
    base, process = fault_server(f"ok,{behaviour}")
    endpoint = Endpoint(base, {}, "faulty", {"kind": None})
    settings = _settings([Level(concurrency=2)], timeout_s=2.0, api=api)
    started = time.perf_counter()
    record = _record(endpoint, settings, run_levels(endpoint, settings), tmp_path)
    (saved,) = valid_records(tmp_path / "results")
    fault.lost_records = 1 - len([saved])
    fault.leftover_processes = _stray_children([process])
    level = saved.details["levels"][0]
    assert saved.id == record.id and saved.status == "ok"
    assert level["errors_by_kind"] == {HOSTILE[behaviour]: level["requests"] // 2}  # every other request
    failed = [r for r in level["requests_detail"] if "error" in r]
    assert failed and all(r["detail"] and "output_tokens" not in r for r in failed)  # the server's counts unused
    # The completed half is measured as usual: 4 tokens each, from usage.
    assert level["completed"] == level["requests"] // 2 and level["output_tokens_per_s"] > 0
    assert level["output_tokens_per_s"] == pytest.approx(4 * level["completed"] / level["duration_s"])
    assert all(len(r["chunk_times_s"]) <= 4 + 2 for r in level["requests_detail"])  # max_tokens and 2 more
    # Each request within its 2 s deadline; a loris request takes all of it, the others none of it.
    assert time.perf_counter() - started < (3 * 2.0 + 5 if behaviour == "loris" else 5)
    assert fault.lost_records == 0 and fault.leftover_processes == 0


def test_an_endless_line_keeps_bench_under_its_memory_bound(fault_server, tmp_path, fault):
    base, process = fault_server("ok,endless-line")
    code, out, err, peak_mb, wall, left = _bench(
        tmp_path, "serve", base, "--concurrency", "4", "--min-requests", "16", "--duration", "0", "--warmup", "0",
        "--prompt-len", "8", "--output-len", "4", "--timeout", "10", "--results-dir", str(tmp_path / "results"))
    records = valid_records(tmp_path / "results")
    fault.lost_records, fault.leftover_processes = 1 - len(records), left
    assert code == 0, err
    (record,) = records
    assert record.details["levels"][0]["errors_by_kind"] == {"oversized": 8}
    # The server sends over 200 MB/s until bench hangs up; bench reads one line's cap (1 MiB) of it.
    assert peak_mb < PEAK_RSS_BOUND_MB, f"bench peaked at {peak_mb:.0f} MB"
    assert wall < 30 and fault.lost_records == 0 and left == 0


def test_endless_empty_deltas_leave_a_small_record(fault_server, tmp_path, fault):
    base, process = fault_server("ok,empty-deltas")
    code, out, err, peak_mb, wall, left = _bench(
        tmp_path, "serve", base, "--api", "chat", "--concurrency", "2", "--min-requests", "8", "--duration", "0",
        "--warmup", "0", "--prompt-len", "8", "--output-len", "4", "--timeout", "4",
        "--results-dir", str(tmp_path / "results"))
    records = valid_records(tmp_path / "results")
    fault.lost_records, fault.leftover_processes = 1 - len(records), left
    assert code == 0, err
    (path,) = (tmp_path / "results").glob("*.json")
    assert path.stat().st_size < 100_000  # was 11.5 MB from two 4-second requests
    assert records[0].details["levels"][0]["errors_by_kind"] == {"oversized": 4}
    assert peak_mb < PEAK_RSS_BOUND_MB and fault.lost_records == 0 and left == 0


@pytest.mark.parametrize("endpoint", ["models", "version", "tokenize"])
def test_a_slow_loris_discovery_call_ends_at_its_deadline(fault_server, tmp_path, endpoint, fault):
    """A byte every 2 s never trips httpx's per-read timeout; each discovery call has one deadline instead."""
    base, process = fault_server("ok", **{endpoint: "loris"})
    deadline = 1.5
    started = time.perf_counter()
    if endpoint == "models":
        with pytest.raises(UserError, match="no whole answer within 1.5 s"):
            probe(base, {}, None, deadline)
    elif endpoint == "version":
        assert probe(base, {}, None, deadline)[1]["reported_by"] == "Server header"
    else:
        assert server_counter(base, {}, "faulty", deadline) is None  # prompts fall back to words
    took = time.perf_counter() - started
    fault.leftover_processes = _stray_children([process])
    assert took < deadline + DEADLINE_MARGIN_S, took
    assert fault.leftover_processes == 0


def test_a_slow_loris_model_list_is_one_line_within_the_deadline(fault_server, tmp_path, fault):
    base, process = fault_server("ok", models="loris")
    code, out, err, peak_mb, wall, left = _bench(tmp_path, "serve", base, "--timeout", "2",
                                                 "--results-dir", str(tmp_path / "results"))
    fault.leftover_processes = left
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no whole answer within 2 s" in err, err
    assert wall < 2 + START_MARGIN_S and left == 0
    assert not (tmp_path / "results").exists()  # nothing ran, so nothing to record


def test_a_slow_loris_tokenizer_still_gives_a_record(fault_server, tmp_path, fault):
    base, process = fault_server("ok", tokenize="loris")
    code, err, wall, left, records = _two_requests(tmp_path, base, fault)
    assert code == 0, err
    assert records[0].details["prompt_tokens_counted_by"] == "usage"
    assert wall < 2 + START_MARGIN_S and fault.lost_records == 0 and left == 0


def test_a_tokenizer_failing_part_way_leaves_word_prompts_and_a_note(fault_server, tmp_path, fault):
    base, process = fault_server("ok", tokenize="later")
    code, err, wall, left, records = _two_requests(tmp_path, base, fault)
    assert code == 0, err
    details = records[0].details
    assert details["prompt_tokens_counted_by"] == "usage" and details["tokenizer_failed"].startswith("http-500")
    assert any("tokenize endpoint failed" in note for note in records[0].notes)
    assert fault.lost_records == 0 and left == 0


@pytest.mark.parametrize("options, message", [
    ({"models": "html"}, "not a model list"),
    ({"models": "list"}, "answered [1, 2], not a model list"),
    ({"name": "5"}, "names its model 5: not a name a request can carry"),
    ({"name": '"\\ud800x"'}, "not a name a request can carry"),  # a lone surrogate: no request can carry it
])
def test_a_model_list_bench_cannot_use_is_one_line_before_anything_runs(fault_server, tmp_path, options, message,
                                                                        fault):
    base, process = fault_server("ok", **options)
    code, out, err, peak_mb, wall, left = _bench(tmp_path, "serve", base, "--results-dir", str(tmp_path / "results"))
    fault.leftover_processes = left
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "requests.log").read_text().count("/v1/completions") and left == 0


@pytest.mark.parametrize("name", ["modèle-日本", "n" * 300, "org/model with spaces"])
def test_any_served_name_gives_a_record_with_a_plain_file_name(fault_server, tmp_path, name, fault):
    base, process = fault_server("ok", name=json.dumps(name), version="bad")
    code, err, wall, left, records = _two_requests(tmp_path, base, fault)
    assert code == 0, err
    (record,) = records
    assert record.model.id == name and record.config["served_model"] == name and record.status == "ok"
    assert RECORD_ID.fullmatch(record.id) and record.id.isascii() and len(record.id) <= 200
    assert record.details["engine"]["reported_by"] == "Server header"  # a /version of the wrong shape is skipped
    assert fault.lost_records == 0 and left == 0


def test_record_ids_of_names_that_differ_only_outside_ascii_differ():
    started = datetime(2026, 11, 23, 14, 45, 1, tzinfo=timezone.utc)
    first, second = (new_record_id("inference", f"./models/modèle-{tail}", started)[:-7]
                     for tail in ("日本", "中国"))
    assert first != second and first.isascii() and second.isascii()
    long_ids = {new_record_id("serve", "x" * 500 + tail, started)[:-7] for tail in ("a", "b")}
    assert len(long_ids) == 2 and all(len(i) < 200 and RECORD_ID.fullmatch(i) for i in long_ids)
    assert new_record_id("serve", "tiny-llama", started)[:-7] == "20261123T144501Z-serve-tiny-llama"


@pytest.mark.parametrize("key", ['sk-"quoted\\key-123', "sk-back\\slash/and%percent", "sk-plain-0123456789"])
def test_an_echoed_api_key_is_withheld_and_the_sweep_recorded(fault_server, tmp_path, key, fault):
    base, process = fault_server("ok,echo", name="echo", version="echo")
    code, out, err, peak_mb, wall, left = _bench(
        tmp_path, "serve", base, "--concurrency", "2", "--min-requests", "4", "--duration", "0", "--warmup", "0",
        "--prompt-len", "8", "--output-len", "4", "--timeout", "2", "--results-dir", str(tmp_path / "results"),
        env={"OPENAI_API_KEY": key})
    records = valid_records(tmp_path / "results")
    fault.lost_records, fault.leftover_processes = 1 - len(records), left
    assert code == 0 and "Traceback" not in err, err
    (record,) = records
    assert record.details["levels"][0]["errors_by_kind"] == {"error": 2}
    assert record.config["served_model"] == "[withheld: held a secret]"
    assert any("texts held a secret" in note for note in record.notes)
    data = next((tmp_path / "results").glob("*.json")).read_bytes()
    for form in (key, json.dumps(key)[1:-1], quote(key, safe="")):
        assert form.encode() not in data and form not in out
    assert fault.lost_records == 0 and left == 0


def _plain_record(error: str):
    return new_record(kind="serve", status="error", error=error, model=MODEL_REF, config={}, hardware={}, software={},
                      metrics={}, details={}, started=datetime.now(timezone.utc), duration_s=1.0)


def test_the_store_refuses_a_secret_json_escaped_or_url_encoded(tmp_path):
    key = 'sk-"quoted\\key/123'
    secrets = {"the API key from $TEST_KEY": key}
    for text in (key, f"see /keys?k={quote(key, safe='')}", f"see /keys?k={quote(key, safe='').lower()}"):
        with pytest.raises(SecretInRecord, match=r"the API key from \$TEST_KEY") as refused:
            write_record(_plain_record(text), tmp_path / "results", secrets)
        assert key not in str(refused.value)
    assert not list((tmp_path / "results").glob("*.json"))
    assert write_record(_plain_record("sk-other"), tmp_path / "results", secrets).exists()


def test_a_record_that_would_still_hold_the_key_is_one_line_exit_1(fault_server, tmp_path, monkeypatch):
    """A key that is all digits can turn up in a number, which cannot be withheld: bench refuses to write."""
    base, _ = fault_server("ok")
    monkeypatch.setenv("BENCH_TEST_KEY", "1234567890")
    endpoint = Endpoint(base, {}, "faulty", {"kind": None})
    settings = _settings([Level(concurrency=1)], min_requests=2)
    outcome = run_levels(endpoint, settings)
    with pytest.raises(RecordRefused, match=r"API key from \$BENCH_TEST_KEY") as refused:
        write_serve_record(endpoint=endpoint, settings=settings, outcome=outcome, error=None, model_ref=MODEL_REF,
                           hardware={"target": None, "emulated": False, "memory_bytes": 1234567890},
                           results_dir=tmp_path / "results", started=datetime.now(timezone.utc), duration_s=1.0,
                           api_key_env="BENCH_TEST_KEY")
    assert refused.value.exit_code == 1 and "1234567890" not in str(refused.value)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.json"))


@pytest.mark.parametrize("args, env, message", [
    (["http://127.0.0.1:abc"], {}, "is not a URL"),
    (["http://[::1"], {}, "Invalid IPv6 URL"),
    (["http://127.0.0.1%2f:8000"], {}, "neither a host name"),
    (["http://127.0.0.1:0"], {}, "port 0"),
    (["http://127.0.0.1:9"], {"OPENAI_API_KEY": "clé-secrète-123"}, "not printable ASCII"),
    (["http://127.0.0.1:9", "--rate", "inf"], {}, "--rate inf: must be more than 0"),
    (["http://127.0.0.1:9", "--slo-ttft", "nan"], {}, "--slo-ttft nan"),
    (["http://127.0.0.1:9", "--slo-itl", "-1"], {}, "--slo-itl -1"),
    (["http://127.0.0.1:9", "--timeout", "inf"], {}, "--timeout inf"),
    (["http://127.0.0.1:9", "--concurrency", "100000"], {}, "at most 1024"),
    (["http://127.0.0.1:9", "--prompt-len", "-5"], {}, "--prompt-len"),
    (["http://127.0.0.1:9", "--tokenizer", "/no/such/tokenizer"], {}, "no such folder"),
    (["tiny-llama", "--startup-timeout", "-1"], {}, "--startup-timeout -1"),
])
def test_bad_serve_options_are_one_line_and_exit_2(run_bench, tmp_path, args, env, message):
    done = run_bench("serve", *args, "--results-dir", str(tmp_path / "results"), env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "clé" not in done.stderr and not (tmp_path / "results").exists()


def test_a_long_answer_keeps_its_first_arrivals_and_a_summary_of_its_gaps():
    from bench.serve.client import KEPT_CHUNK_TIMES, RequestResult

    times = [0.5 + 0.01 * i for i in range(3000)] + [60.0]  # 3000 steady gaps of 10 ms, then one of ~30 s
    kept = RequestResult(sent_at=0.0, chunk_times_s=times).to_dict()
    assert kept["chunk_times_s"] == times[:KEPT_CHUNK_TIMES] and kept["chunks"] == 3001
    summary = kept["itl_summary_s"]
    assert summary["p50"] == pytest.approx(0.01) and summary["max"] == pytest.approx(60.0 - times[-2])
    assert RequestResult(sent_at=0.0, chunk_times_s=times[:10]).to_dict()["chunk_times_s"] == times[:10]
