"""Run one of `targets` through bench's runner (isolated child, record written), as `bench run` does.

Usage: python -m tests.faults.driver TARGET RESULTS_DIR TIMEOUT_S [KEY=VALUE ...]; prints the record's
status and where it went. A process of its own, so that a test can kill it like a user kills `bench`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.config.registry import load_registry
from bench.jobs.runner import ResolvedModel, Weights, execute
from bench.records.store import saved_path


def main() -> None:
    target, results_dir, timeout_s, *pairs = sys.argv[1:]
    spec = load_registry().model("tiny-llama")
    record = execute("inference", f"tests.faults.targets:{target}", dict(p.split("=", 1) for p in pairs),
                     model=ResolvedModel(id=spec.id, architecture=spec.architecture, spec=spec),
                     weights=Weights("unused", "synthetic", None, None, None), device="cpu", gpu=None, config={},
                     results_dir=Path(results_dir), timeout_s=float(timeout_s))
    print(record.status, saved_path(record.id, Path(results_dir)))


if __name__ == "__main__":
    main()
