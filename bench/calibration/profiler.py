"""The one walk of torch's profiler event tree that the calibration probes share.

The probes hold the training estimate to what torch's CPU allocator did: its running total
after each allocation and free, in time order, and when a named range (a backward) began.
"""

from __future__ import annotations

from typing import Any

from torch._C._profiler import _EventType


def cpu_allocations(prof: Any, ranges: tuple[str, ...] = ()) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """((time in ns, allocator total relative to the start) for every CPU allocation and free, in time
    order; the start time of each range in `ranges` that the profiler recorded)."""
    events: list[tuple[int, int]] = []
    starts: dict[str, int] = {}
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.total_allocated))
        elif node.name in ranges:
            starts[node.name] = min(node.start_time_ns, starts.get(node.name, node.start_time_ns))
        stack.extend(node.children)
    return sorted(events), starts
