"""The CUDA cards this process may use, through NVML.

`visible_cards` is the parent's view, without creating a CUDA context; `NvmlCard` is the
measuring child's view of one card torch already uses (matched by UUID, which names a MIG
instance as well as a whole GPU; by PCI bus id where torch gives no UUID, which under MIG
names the parent GPU: figures for the whole GPU, said in the record as `nvml_scope`).

The parent process decides a run's cap and checks its cards before the measurement
starts, and must hold no CUDA context while the child measures (a context costs a few
hundred MiB of the very card being measured). NVML answers without one; torch's
device count, the fallback where nvidia-ml-py is missing, does not create one either,
but gives no names or sizes. `CUDA_VISIBLE_DEVICES` is applied as CUDA applies it
(indices, or UUIDs and their unambiguous prefixes, in the PCI order bench sets), since NVML
itself ignores it. A GPU in MIG mode shows CUDA its MIG instances, not itself: each
instance is listed with its own name and memory.
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
        return [Card(_text(lib.nvmlDeviceGetName(h)), int(lib.nvmlDeviceGetMemoryInfo(h).total))
                for h in visible_handles(lib, os.environ.get("CUDA_VISIBLE_DEVICES"))]


def mig_instances(lib: Any, handle: Any) -> list[Any]:
    """The MIG instances of a GPU in MIG mode (what CUDA sees in its place); [] when MIG is off or unsupported."""
    try:
        current, _pending = lib.nvmlDeviceGetMigMode(handle)
    except lib.NVMLError:  # not a MIG-capable GPU
        return []
    if current != getattr(lib, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    found = []
    for slot in range(lib.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            found.append(lib.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))
        except lib.NVMLError:  # an empty slot
            continue
    return found


def visible_handles(lib: Any, cuda_visible_devices: str | None) -> list[Any]:
    """NVML handles of what CUDA will see, in order: GPUs, or the MIG instances of a GPU in MIG mode.

    A UUID entry may be a prefix (CUDA accepts any unambiguous one) of a GPU's or a MIG instance's UUID;
    an entry that names nothing, or more than one device, ends the list as CUDA's parsing does, instead of
    NVML's lookup error.
    """
    gpus = [lib.nvmlDeviceGetHandleByIndex(i) for i in range(lib.nvmlDeviceGetCount())]
    handles: list[Any] = []
    for entry in visible_selection(cuda_visible_devices, len(gpus)):
        if isinstance(entry, int):
            handles.extend(mig_instances(lib, gpus[entry]) or [gpus[entry]])
            continue
        every = [(h, _text(lib.nvmlDeviceGetUUID(h))) for g in gpus for h in (g, *mig_instances(lib, g))]
        matches = [h for h, uuid in every if uuid.startswith(entry)]
        if len(matches) != 1:
            break
        handles.append(matches[0])
    return handles


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
            self.handle, self.scope = nvml_handle(pynvml, torch.cuda.get_device_properties(index))
        except BaseException:
            pynvml.nvmlShutdown()
            raise

    def device_used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def process_used(self, pids: set[int]) -> int:
        """Summed over our PIDs; 0 when NVML lists none of them (host PIDs) or withholds the figure (None)."""
        procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid in pids)

    def processes_listed(self, other_than: set[int]) -> int:
        """How many compute processes NVML lists on the card, leaving out the PIDs `other_than`."""
        return sum(p.pid not in other_than for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))

    def close(self) -> None:
        # A failed shutdown must not replace the measured block's own exception.
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()


def nvml_handle(lib: Any, props: Any) -> tuple[Any, str]:
    """NVML's handle for the device torch describes by `props`, and what its figures cover.

    By UUID first: a MIG instance's ("MIG-...") names the instance itself, a GPU's ("GPU-...") the GPU.
    The PCI bus id, the fallback, resolves to the whole GPU even when torch runs on one of its MIG
    instances: then the figures are the parent GPU's ("parent-gpu"), and the record says so.
    """
    uuid = str(getattr(props, "uuid", "") or "")
    if uuid:
        for prefix, scope in (("MIG-", "mig-instance"), ("GPU-", "gpu")):
            try:
                return lib.nvmlDeviceGetHandleByUUID(prefix + uuid), scope
            except lib.NVMLError:
                continue
    bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    handle = lib.nvmlDeviceGetHandleByPciBusId(bus_id)
    return handle, "parent-gpu" if mig_instances(lib, handle) else "gpu"
