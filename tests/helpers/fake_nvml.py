"""An NVML stand-in for the facts a machine without an NVIDIA driver cannot have: GPUs, MIG instances, UUIDs,
driver versions, process lists. It answers pynvml's calls the way pynvml does (handles are opaque objects,
errors are `NVMLError`), so bench's own code runs unchanged against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    """pynvml's error type: bench's code catches it by this name."""


@dataclass
class Device:
    name: str
    uuid: str
    total: int
    used: int = 0
    mig: list[Device] = field(default_factory=list)  # MIG instances; non-empty means MIG mode is on
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    bus_id: str = ""


class FakeNvml:
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, gpus: list[Device], driver: str = "580.65.06") -> None:
        self.gpus, self.driver = gpus, driver
        self.NVMLError = NVMLError

    def _all(self) -> list[Device]:
        return [d for g in self.gpus for d in (g, *g.mig)]

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Device:
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Device:
        for device in self._all():
            if device.uuid == uuid:  # NVML wants the whole UUID, never a prefix
                return device
        raise NVMLError("Not Found")

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> Device:
        for gpu in self.gpus:
            if gpu.bus_id == bus_id:
                return gpu
        raise NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, handle: Device) -> str:
        return handle.uuid

    def nvmlDeviceGetName(self, handle: Device) -> str:
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: Device) -> SimpleNamespace:
        return SimpleNamespace(total=handle.total, used=handle.used, free=handle.total - handle.used)

    def nvmlDeviceGetMigMode(self, handle: Device) -> list[int]:
        if handle not in self.gpus:
            raise NVMLError("Not Supported")
        return [1, 1] if handle.mig else [0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Device) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Device, index: int) -> Device:
        if index >= len(handle.mig):
            raise NVMLError("Not Found")
        return handle.mig[index]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Device) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in handle.processes]

    def nvmlInit(self) -> None:
        """Nothing to start."""

    def nvmlShutdown(self) -> None:
        """Nothing to stop."""
