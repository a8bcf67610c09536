"""What a run is doing, shown while it runs: phases from the child, cells of a sweep, and `--verbose`.

A measurement runs in an isolated child whose file descriptors 1 and 2 point at the
run's log (`bench.launch.isolate`), so the parent cannot see it print. The channel is that
log: the child writes one marked line per phase into it (:func:`phase`, which does
nothing outside an isolated child), and the parent tails the log while it waits. The
same tail serves `--verbose`, which copies every line of the log to the terminal. The
log keeps the phase lines too, so it says afterwards where a run stopped.

The live display (a spinner with the run's phase and elapsed time, and for a sweep
the cells done, elapsed and estimated remaining) draws on stderr, with rich, only
when stderr is a terminal: piped into a file, a CI log or a test, a command prints
exactly what it printed before, and no thread tails any log unless `--verbose` asks.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARK = "bench-phase: "
POLL_S = 0.1  # how often the parent reads what the child added to its log
_LINE_END = re.compile(r"\r\n|\r|\n")  # progress bars rewrite a line with \r: each state is a line

_reporting = False


# --- the child's side -------------------------------------------------------------------------


def enable_reporting() -> None:
    """Called by the isolated child once its output goes to the run's log: phases are written from then on."""
    global _reporting
    _reporting = True


def phase(text: str) -> None:
    """Say what the measurement does now ("loading the model", "latency iteration 3 of 5").

    One marked line in the run's log, written whole with one system call; a no-op when this
    process is not an isolated measurement (a test calling a scenario directly prints nothing).
    """
    if not _reporting:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, f"{MARK}{text}\n".encode())


def counted(what: str, n: int, total: int) -> str:
    """'latency iteration 3 of 5'; past a minimum that is not a total, 'latency iteration 7 (5 minimum)'."""
    return f"{what} {n} of {total}" if n <= total else f"{what} {n} ({total} minimum)"


# --- the parent's side ------------------------------------------------------------------------


class Display:
    """The parent's view of the work in progress; this base shows nothing but `--verbose` lines.

    Commands that measure open one with :func:`session`; the code that runs measurements
    reaches it through :func:`current_display`, so a run started without a session (a test,
    a Ray worker) shows nothing.
    """

    def __init__(self, verbose: bool = False, now: Callable[[], float] = time.monotonic) -> None:
        self.verbose = verbose
        self.now = now  # the clock behind elapsed times and the sweep's estimate
        self.label = ""
        self.phase = ""
        self.run_started = now()
        self.cells_done: int | None = None
        self.cells_total = 0
        self._sweep_started: float | None = None
        self._cells_at_start = 0
        self._last_cell_done = 0.0

    @contextlib.contextmanager
    def run(self, label: str, log_path: str | os.PathLike[str] | None) -> Iterator[None]:
        """Show one measurement, named `label`, while the block runs; its child's log is tailed."""
        self.label, self.phase, self.run_started = label, "starting", self.now()
        tail = _LogTail(Path(log_path), self._log_line) if log_path is not None and self._tails_logs() else None
        if tail:
            tail.start()
        try:
            yield
        finally:
            if tail:
                tail.stop()

    def set_phase(self, text: str) -> None:
        self.phase = text

    def cells(self, finished: int, total: int) -> None:
        """A sweep's count: `finished` of `total` cells have a result (run, skipped or refuted)."""
        if self._sweep_started is None:  # what was finished before anything ran took no time to finish
            self._sweep_started, self._cells_at_start = self.now(), finished
        if finished != self.cells_done:
            self._last_cell_done = self.now()
        self.cells_done, self.cells_total = finished, total

    def sweep_line(self) -> str:
        """'cells 3/10 done, 4:12 elapsed, about 9:40 left'.

        The estimate: the mean time of the cells measured so far for each cell left, less the time
        the current cell has already run; none before the first cell is measured.
        """
        if self.cells_done is None or self._sweep_started is None:
            return ""
        now = self.now()
        measured = self.cells_done - self._cells_at_start
        line = f"cells {self.cells_done}/{self.cells_total} done, {clock(now - self._sweep_started)} elapsed"
        if measured > 0 and self.cells_done < self.cells_total:
            per_cell = (self._last_cell_done - self._sweep_started) / measured
            left = per_cell * (self.cells_total - self.cells_done) - (now - self._last_cell_done)
            line += f", about {clock(max(left, 0))} left"
        return line

    def run_line(self) -> str:
        """'inference tiny-llama: latency iteration 3 of 5 (0:12)'."""
        return f"{self.label}: {self.phase} ({clock(self.now() - self.run_started)})" if self.label else ""

    def _tails_logs(self) -> bool:
        return self.verbose

    def _log_line(self, line: str) -> None:
        if line.startswith(MARK):
            self.set_phase(line[len(MARK):])
        if self.verbose:
            self._echo(line)

    def _echo(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing drawn: nothing to take down."""


class LiveDisplay(Display):
    """The display on a terminal: rich redraws the sweep and run lines a few times a second, and
    clears them when the command is done, so only the command's own output stays on screen."""

    def __init__(self, verbose: bool, console: Any) -> None:
        from rich.live import Live
        from rich.spinner import Spinner

        super().__init__(verbose)
        self._spinner = Spinner("dots")
        # stderr writes are printed above the display; stdout is left alone, so what a command prints there
        # stays on stdout (a pipe, a file) rather than joining the display's stream.
        self._live = Live(console=console, get_renderable=self._render, refresh_per_second=4, transient=True,
                          redirect_stdout=False)
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        self._spinner.update(text=Text(self.run_line() or "starting"))
        sweep = self.sweep_line()
        return Group(Text(sweep), self._spinner) if sweep else self._spinner

    def _tails_logs(self) -> bool:
        return True  # the phases come through the log

    def _echo(self, line: str) -> None:
        self._live.console.print(line, markup=False, highlight=False, emoji=False)

    def close(self) -> None:
        self._live.stop()


_current: Display = Display()


def current_display() -> Display:
    return _current


@contextlib.contextmanager
def session(verbose: bool = False, console: Any = None) -> Iterator[Display]:
    """The display for one command: live when stderr is a terminal (or `console`, a rich Console,
    says it draws on one), else quiet but for `--verbose` lines."""
    global _current
    if console is None and sys.stderr.isatty() and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        console = Console(stderr=True)
    display = LiveDisplay(verbose, console) if console is not None and console.is_terminal else Display(verbose)
    previous, _current = _current, display
    try:
        yield display
    finally:
        _current = previous
        display.close()


def clock(seconds: float) -> str:
    """Elapsed time as m:ss, or h:mm:ss from an hour."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _LogTail:
    """Reads what is appended to a log, line by line, on a thread, until stopped; then reads the rest.

    The log may not exist yet (the child opens it): reading starts from its first byte once it does.
    """

    def __init__(self, path: Path, on_line: Any) -> None:
        self._path, self._on_line = path, on_line
        self._offset = path.stat().st_size if path.exists() else 0
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two reads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="bench-log-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._read(final=True)

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            self._read(final=False)

    def _read(self, final: bool) -> None:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        *lines, self._partial = _LINE_END.split(self._partial + self._decoder.decode(chunk, final))
        if final and self._partial:
            lines, self._partial = [*lines, self._partial], ""
        for line in lines:
            if line.strip():
                self._on_line(line)
