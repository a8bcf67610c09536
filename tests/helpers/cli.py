"""`bench` run in the test's own process, as its entry point runs it: for the one-line errors of bad input,
where a fresh interpreter per case would cost seconds each."""

from __future__ import annotations

import signal
import sys

import pytest

from bench import cli


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`bench ARGS` through `cli.main()`: the exit code and stderr."""
    return main_exit(args, monkeypatch), capsys.readouterr().err


def main_exit(args: list[str], monkeypatch) -> int:
    """`cli.main()` with ARGS, its exit code. The SIGINT and SIGTERM handlers main sets (it ignores both once a
    command returns) are put back, so they do not outlive the call in the test process."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as ended:
            cli.main()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ended.value.code
