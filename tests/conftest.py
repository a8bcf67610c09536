"""Shared fixtures: the registry, and a way to run the real `bench` command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.config.registry import load_registry
from tests.helpers.paths import ROOT

# The fault-injection table: its `fault` fixture and the table printed at the end of the session.
pytest_plugins = ["tests.helpers.fault_table"]


@pytest.fixture(scope="session")
def registry():
    return load_registry(ROOT / "configs")


@pytest.fixture
def run_bench():
    """Run `bench ARGS...` in a fresh interpreter, as a user would; returns the CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)

    return run
