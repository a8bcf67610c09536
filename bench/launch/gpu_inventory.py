"""The CUDA cards this process may use, through NVML.

`visible_cards` is the parent's view, without creating a CUDA context; `NvmlCard` is the
measuring child's view of one card torch already uses (matched by PCI bus id).

The parent process decides a run's cap and checks its cards before the measurement
starts, and must hold no CUDA context while the child measures (a context costs a few
hundred MiB of the very card being measured). NVML answers without one; torch's
device count, the fallback where nvidia-ml-py is missing, does not create one either,
but gives no names or sizes. `CUDA_VISIBLE_DEVICES` is applied as CUDA applies it
(indices or UUIDs, in the PCI order bench sets), since NVML itself ignores it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Card:
    name: str
    total_bytes: int  # NVML's total: the board's memory, a little above what CUDA offers


def visible_selection(value: str | None, count: int) -> list[int | str]:
    """NVML indices or UUID prefixes of the cards `CUDA_VISIBLE_DEVICES=value` leaves visible.

    CUDA stops at the first entry it cannot parse; an unset variable shows every card.
    """
    if value is None:
        return list(range(count))
    chosen: list[int | str] = []
    for entry in (e.strip() for e in value.split(",")):
        if entry.isdigit() and int(entry) < count:
            chosen.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            chosen.append(entry)
        else:
            break
    return chosen


@contextmanager
def nvml() -> Iterator[Any]:
    """pynvml, initialised for the block; None where nvidia-ml-py or the driver is missing."""
    try:
        import pynvml
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        yield None
        return
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def visible_cards() -> list[Card] | None:
    """The visible cards through NVML; None when NVML is not available (no nvidia-ml-py or no driver)."""
    with nvml() as lib:
        if lib is None:
            return None
        handles = []
        for entry in visible_selection(os.environ.get("CUDA_VISIBLE_DEVICES"), lib.nvmlDeviceGetCount()):
            if isinstance(entry, int):
                handles.append(lib.nvmlDeviceGetHandleByIndex(entry))
            else:
                handles.append(lib.nvmlDeviceGetHandleByUUID(entry))
        return [Card(_text(lib.nvmlDeviceGetName(h)), int(lib.nvmlDeviceGetMemoryInfo(h).total)) for h in handles]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def cuda_card_count(cards: list[Card] | None) -> int:
    """How many CUDA cards are visible: NVML's view (`cards`, from `visible_cards`), else torch's when
    NVML did not answer (0 without a CUDA build or driver)."""
    if cards is not None:
        return len(cards)
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class NvmlCard:
    """NVML's view of the card torch calls `index`, matched by PCI bus id (NVML numbers cards its own way)."""

    def __init__(self, index: int) -> None:
        import pynvml
        import torch

        pynvml.nvmlInit()
        self.nvml = pynvml
        try:
            props = torch.cuda.get_device_properties(index)
            if hasattr(props, "pci_bus_id"):
                bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
                self.handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
            else:  # torch builds that do not expose the PCI ids: the UUID names the same card
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{props.uuid}")
        except BaseException:
            pynvml.nvmlShutdown()
            raise

    def device_used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def process_used(self, pids: set[int]) -> int:
        """Summed over our PIDs; 0 when NVML lists none of them (host PIDs) or withholds the figure (None)."""
        procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid in pids)

    def close(self) -> None:
        # A failed shutdown must not replace the measured block's own exception.
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()
