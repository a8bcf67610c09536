"""The fault-injection table, a pytest plugin every test session loads (tests/conftest.py), so a fault test
anywhere (tests/faults/, the hostile-server tests) adds its row. The tally: each test injects one fault, counts what it lost and what it left
running, and the session ends with the table (tried, handled, lost records, leftover processes).

A fault is handled when its test passed; lost records and leftover processes are counted by the test
itself (records checked by reading them back, processes by pid) and must be 0 for it to pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Fault:
    nodeid: str
    name: str
    lost_records: int = 0
    leftover_processes: int = 0


FAULTS: list[Fault] = []


@pytest.fixture
def fault(request) -> Fault:
    """This test's row of the table: set `lost_records` and `leftover_processes` as counted."""
    row = Fault(request.node.nodeid, request.node.name.removeprefix("test_"))
    FAULTS.append(row)
    return row


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FAULTS:
        return
    passed = {r.nodeid for r in terminalreporter.stats.get("passed", []) if r.when == "call"}
    width = max(len(f.name) for f in FAULTS)
    write = terminalreporter.write_line
    terminalreporter.section("fault injection")
    write(f"{'fault':{width}s}  handled  lost records  leftover processes")
    for f in FAULTS:
        write(f"{f.name:{width}s}  {'yes' if f.nodeid in passed else 'NO':7s}  {f.lost_records:12d}  "
              f"{f.leftover_processes:18d}")
    handled = sum(f.nodeid in passed for f in FAULTS)
    write(f"{'total':{width}s}  tried {len(FAULTS)}, handled {handled}, lost records "
          f"{sum(f.lost_records for f in FAULTS)}, leftover processes {sum(f.leftover_processes for f in FAULTS)}")
