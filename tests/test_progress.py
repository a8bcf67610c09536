"""What the terminal shows of a run: its phases through the child's log, `--verbose`, the sweep estimate,
and nothing of the engine's, not even as bench exits."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.launch import progress
from bench.launch.isolate import run_isolated
from tests.helpers.paths import ROOT
from tests.helpers.progress_targets import ENGINE_LINES, PHASES


def _run(tmp_path, pause_s: float = 0.0):
    log = tmp_path / "run.log"
    with progress.current_display().run("inference tiny-llama", log):
        outcome = run_isolated("tests.helpers.progress_targets:chatty", {"pause_s": pause_s}, 60, log_path=log)
    assert outcome.status == "ok", outcome.error
    return log


def test_phases_are_marked_lines_of_the_log(tmp_path):
    text = _run(tmp_path).read_text()
    assert [line.removeprefix(progress.MARK) for line in text.splitlines()
            if line.startswith(progress.MARK)] == list(PHASES)
    assert all(line in text for line in ENGINE_LINES)


def test_phase_is_silent_outside_an_isolated_child(capfd):
    progress.phase("loading the model")
    assert capfd.readouterr() == ("", "")


def test_quiet_session_off_a_terminal_prints_nothing(tmp_path, capfd):
    with progress.session(verbose=False) as display:
        assert type(display) is progress.Display  # pytest's stderr is no terminal
        _run(tmp_path)
    assert capfd.readouterr() == ("", "")


def test_verbose_streams_the_whole_log_to_stderr(tmp_path, capfd):
    with progress.session(verbose=True):
        _run(tmp_path)
    out, err = capfd.readouterr()
    assert out == ""
    assert err.splitlines() == [progress.MARK + PHASES[0], ENGINE_LINES[0], progress.MARK + PHASES[1],
                                ENGINE_LINES[1], progress.MARK + PHASES[2]]


def test_live_display_draws_each_phase_and_clears_itself(tmp_path):
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with progress.session(console=console) as display:
        assert isinstance(display, progress.LiveDisplay)
        _run(tmp_path, pause_s=0.6)
        assert display.phase == PHASES[-1]
    drawn = screen.getvalue()
    for step in PHASES:
        assert f"inference tiny-llama: {step} (0:0" in drawn
    assert drawn.endswith("\x1b[2K")  # transient: the last thing drawn erases the display's line
    assert not any(line in drawn for line in ENGINE_LINES)  # not verbose: the engine stays in its log


def test_sweep_line_counts_cells_and_estimates_from_measured_ones_only():
    clock = [100.0]
    display = progress.Display(now=lambda: clock[0])
    assert display.sweep_line() == ""
    display.cells(4, 10)  # four cells skipped or refuted before anything ran: no time spent on them
    assert display.sweep_line() == "cells 4/10 done, 0:00 elapsed"
    clock[0] += 90
    display.cells(6, 10)  # two cells measured in 90 s: four left take about 180 s
    assert display.sweep_line() == "cells 6/10 done, 1:30 elapsed, about 3:00 left"
    clock[0] += 30
    display.cells(6, 10)  # 30 s into the next cell: 150 s left, not a longer estimate for a longer wait
    assert display.sweep_line() == "cells 6/10 done, 2:00 elapsed, about 2:30 left"
    clock[0] += 3570
    display.cells(10, 10)
    assert display.sweep_line() == "cells 10/10 done, 1:01:30 elapsed"


def test_counted_says_when_a_minimum_is_passed():
    assert progress.counted("latency iteration", 3, 5) == "latency iteration 3 of 5"
    assert progress.counted("latency iteration", 7, 5) == "latency iteration 7 (5 minimum)"


def test_shared_memory_an_engine_leaves_is_unlinked_without_a_word_on_the_terminal():
    """The resource tracker cleans a segment the child left (vLLM's, when stopped) as bench exits; its
    'leaked shared_memory objects' warning used to follow bench's summary on the terminal."""
    script = ("import json; from bench.launch.isolate import run_isolated; "
              "out = run_isolated('tests.helpers.progress_targets:leaks_shared_memory', {}, 60); print(json.dumps(out.value))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    name = json.loads(proc.stdout)["name"]
    assert proc.stderr == ""
    assert not (Path("/dev/shm") / name).exists()
