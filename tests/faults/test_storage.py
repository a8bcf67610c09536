"""Faults in storage: a read-only and a full results folder (a real tmpfs where the machine lets a user
namespace mount one, else a simulated failing write), concurrent writers to one folder, and a writer
killed at each step of writing a record."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from tests.helpers.cli import main_exit
from tests.helpers.faults import PYTHON, TINY_RUN, can_mount_tmpfs, one_line, valid_records
from tests.helpers.paths import ROOT

TMPFS = can_mount_tmpfs()


def in_own_mount(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace, where it may mount a tmpfs."""
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_a_read_only_results_folder_is_refused_before_the_run(tmp_path, fault, monkeypatch, capsys):
    results = tmp_path / "results"
    results.mkdir()
    bench = f"{PYTHON} -m bench.cli {' '.join(TINY_RUN)} --results-dir {results}"
    if TMPFS:
        proc = in_own_mount(f"mount -t tmpfs -o ro tmpfs {results} && exec {bench}", {})
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    elif os.geteuid() != 0:
        results.chmod(0o555)
        proc = subprocess.run(bench.split(), cwd=ROOT, capture_output=True, text=True, timeout=120)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:  # root without user namespaces ignores permission bits: the folder's first write fails instead
        code, out, err = _run_with_failing_folder_write(results, monkeypatch, capsys)
    assert code == 2 and "not writable" in one_line(err)
    assert "peak memory" not in out  # refused before, not after, the measurement


def _run_with_failing_folder_write(results, monkeypatch, capsys) -> tuple[int, str, str]:
    """`bench run` in this process, with every file made in `results` failing as on a read-only mount."""
    import errno
    import tempfile

    real = tempfile.TemporaryFile

    def read_only(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(results)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr("bench.records.store.tempfile.TemporaryFile", read_only)
    code = main_exit([*TINY_RUN, "--results-dir", str(results)], monkeypatch)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_folder_that_fills_during_the_run_keeps_the_record_in_the_fallback_place(tmp_path, fault, monkeypatch,
                                                                                    capsys):
    results, state = tmp_path / "results", tmp_path / "state"
    results.mkdir()
    if TMPFS:
        script = (f"mount -t tmpfs -o size=20m tmpfs {results} && {PYTHON} -m tests.faults.driver "
                  f"fills_the_results_folder {results} 60 results_dir={results}")
        proc = in_own_mount(script, {"XDG_STATE_HOME": str(state)})
        code, err = proc.returncode, proc.stderr
    else:  # no tmpfs to fill: the record's write into the results folder fails as on a full disk
        code, err = _run_with_full_folder(results, state, monkeypatch, capsys)
    assert code == 0, err
    assert "kept it at" in one_line(err) and str(state) in err
    records = valid_records(state / "bench" / "unsaved-records")
    fault.lost_records = 1 - len(records)
    assert [r.status for r in records] == ["ok"]


def _run_with_full_folder(results, state, monkeypatch, capsys) -> tuple[int, str]:
    """The driver in this process, with the record's write into `results` failing for lack of space."""
    import errno

    import bench.records.store
    from tests.faults.driver import main as run_driver

    real = bench.records.store.write_record

    def full(record, directory):
        if directory == results:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(record, directory)

    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setattr(bench.records.store, "write_record", full)
    monkeypatch.setattr("sys.argv", ["driver", "returns_a_metric", str(results), "60"])
    run_driver()
    return 0, capsys.readouterr().err


def test_a_failing_write_keeps_the_record_in_the_fallback_place(tmp_path, fault, monkeypatch):
    """The same fallback without a tmpfs: the results folder is removed from under the run."""
    from tests.faults.driver import main as run_driver

    results, state = tmp_path / "results", tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setattr("sys.argv", ["driver", "returns_a_metric", str(results), "60"])
    import bench.launch.isolate

    real = bench.launch.isolate.run_isolated

    def then_lose_the_folder(*args, **kwargs):
        outcome = real(*args, **kwargs)
        results.rename(tmp_path / "gone")  # the folder vanishes after the run...
        results.write_text("now a file")  # ...and a file takes its name: no record can go there
        return outcome

    monkeypatch.setattr(bench.launch.isolate, "run_isolated", then_lose_the_folder)
    run_driver()
    records = valid_records(state / "bench" / "unsaved-records")
    fault.lost_records = 1 - len(records)
    assert [r.status for r in records] == ["ok"]


WRITER = textwrap.dedent("""
    import sys
    from tests.faults.writers import write_many
    write_many(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
""")


def test_concurrent_writers_to_one_folder_lose_nothing(tmp_path, fault):
    writers, each = 4, 25
    procs = [subprocess.Popen([PYTHON, "-c", WRITER, str(tmp_path), str(w), str(each)], cwd=ROOT)
             for w in range(writers)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    records = valid_records(tmp_path)
    fault.lost_records = writers * each - len(records)
    assert fault.lost_records == 0 and len({r.id for r in records}) == writers * each
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# (function, which call of it, before or after it): every step of write_record that a kill can fall between.
STEPS = [("fchmod", 1, "before"), ("fsync", 1, "before"), ("fsync", 1, "after"), ("link", 1, "after"),
         ("unlink", 1, "after"), ("fsync", 2, "after")]


@pytest.mark.parametrize("function,call,when", STEPS, ids=[f"{w}-{f}-{c}" for f, c, w in STEPS])
def test_a_writer_killed_at_each_step_leaves_the_old_state_or_the_new(tmp_path, fault, function, call, when):
    proc = subprocess.run([PYTHON, "-c", "import sys; from tests.faults.writers import killed_while_writing; "
                           "killed_while_writing(*sys.argv[1:])", str(tmp_path), function, str(call), when],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr  # it was killed where asked
    records = {r.id: r for r in valid_records(tmp_path)}
    fault.lost_records = 0 if "older" in records else 1  # the record written before is never harmed
    new = set(records) - {"older"}
    visible = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert visible == {"older.json"} | {f"{i}.json" for i in new}  # no half-written record in sight
    if function == "link" or (function == "unlink") or call == 2:
        assert new == {"newer"}  # the rename happened: the new state, whole
    else:
        assert not new
    assert records.get("newer", records["older"]).metrics["decode_tokens_per_s"].value > 0


@pytest.mark.parametrize("inside", ["", "site"])
def test_a_report_written_into_its_results_folder_is_refused_and_copies_nothing(tmp_path, fault, inside):
    from tests.helpers.report_records import gpu_inference, write_all

    results = write_all(tmp_path / "results", [
        gpu_inference("night-1", decode=60.0, peak_gib=17.0, started="2026-11-21T03:00:00+00:00")])
    proc = subprocess.run([PYTHON, "-m", "bench.cli", "report", "--out", str(results / inside), "--results-dir",
                           str(results)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "inside the results folder" in one_line(proc.stderr)
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*")) == ["night-1.json"]
    fault.lost_records = 1 - len(valid_records(results))
    assert fault.lost_records == 0


def test_a_truncated_cached_gguf_is_written_again(tmp_path, fault, monkeypatch, registry):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from bench.weights import synthetic_gguf

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    spec = registry.model("tiny-llama")
    path = synthetic_gguf.ensure(spec, "q4_k_m")
    whole = path.read_bytes()
    for cut in (len(whole) - 1, len(whole) // 2, 16, 0):  # a disk that filled, a copy cut short
        path.write_bytes(whole[:cut])
        assert not synthetic_gguf.cached_file_is_whole(path, spec, "q4_k_m")
        assert synthetic_gguf.ensure(spec, "q4_k_m") == path
        assert path.stat().st_size == len(whole) and synthetic_gguf.cached_file_is_whole(path, spec, "q4_k_m")
    fault.lost_records = 0
