"""`bench` run in the test's own process, as its entry point runs it: for the one-line errors of bad input,
where a fresh interpreter per case would cost seconds each."""

from __future__ import annotations

import signal
import sys

import pytest

from bench import cli


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`bench ARGS` through `cli.main()`: the exit code and stderr. The SIGTERM handler main installs is put
    back, so it does not outlive the call."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as ended:
            cli.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return ended.value.code, capsys.readouterr().err
