"""Which NVML device bench reads for what CUDA sees (issue 23, finding 7): UUIDs and their prefixes in
CUDA_VISIBLE_DEVICES, MIG instances in place of their GPU, and which device a torch card resolves to.
NVML itself cannot exist on this machine, so its answers come from tests.helpers.fake_nvml."""

from __future__ import annotations

from types import SimpleNamespace

from bench.launch.gpu_inventory import mig_instances, nvml_handle, visible_handles
from tests.helpers.fake_nvml import Device, FakeNvml

GIB = 2**30


def _machine() -> FakeNvml:
    whole = Device("NVIDIA H100 80GB HBM3", "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", 80 * GIB,
                   bus_id="00000000:17:00.0")
    sliced = Device("NVIDIA A100-SXM4-80GB", "GPU-1a2b3c4d-0000-1111-2222-333344445555", 80 * GIB,
                    bus_id="00000000:65:00.0",
                    mig=[Device("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "MIG-aaaa1111-2222-3333-4444-555566667777",
                                40 * GIB),
                         Device("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "MIG-bbbb1111-2222-3333-4444-555566667777",
                                40 * GIB)])
    return FakeNvml([whole, sliced])


def test_a_uuid_prefix_selects_its_gpu_where_nvml_alone_would_raise():
    lib = _machine()
    (handle,) = visible_handles(lib, "GPU-8932f937")
    assert handle.name == "NVIDIA H100 80GB HBM3"
    assert [h.name for h in visible_handles(lib, "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6")] == [handle.name]


def test_an_unknown_or_ambiguous_uuid_ends_the_list_as_cuda_does():
    lib = _machine()
    assert visible_handles(lib, "GPU-deadbeef") == []
    assert [h.uuid for h in visible_handles(lib, "0,GPU-ffff,1")] == ["GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"]
    assert visible_handles(lib, "MIG-") == []  # two instances match: ambiguous


def test_a_gpu_in_mig_mode_shows_its_instances_with_their_own_memory():
    lib = _machine()
    handles = visible_handles(lib, None)
    assert [h.total // GIB for h in handles] == [80, 40, 40]
    assert [h.uuid for h in visible_handles(lib, "MIG-bbbb")] == ["MIG-bbbb1111-2222-3333-4444-555566667777"]
    assert mig_instances(lib, lib.gpus[0]) == [] and len(mig_instances(lib, lib.gpus[1])) == 2


def test_a_torch_card_resolves_to_its_mig_instance_not_the_parent_gpu():
    lib = _machine()
    # torch's properties of a MIG instance: its UUID, and its parent's PCI bus id.
    props = SimpleNamespace(uuid="bbbb1111-2222-3333-4444-555566667777", pci_domain_id=0, pci_bus_id=0x65,
                            pci_device_id=0)
    handle, scope = nvml_handle(lib, props)
    assert (handle.total, scope) == (40 * GIB, "mig-instance")
    whole, scope = nvml_handle(lib, SimpleNamespace(uuid="8932f937-d72c-4106-c12f-20bd9faed9f6", pci_domain_id=0,
                                                    pci_bus_id=0x17, pci_device_id=0))
    assert (whole.name, scope) == ("NVIDIA H100 80GB HBM3", "gpu")
    # No UUID from torch: the bus id names the parent GPU, and the scope says so.
    parent, scope = nvml_handle(lib, SimpleNamespace(uuid="", pci_domain_id=0, pci_bus_id=0x65, pci_device_id=0))
    assert (parent.total, scope) == (80 * GIB, "parent-gpu")
