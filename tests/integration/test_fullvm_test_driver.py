"""The full VM's lifecycle through libvirt's test driver: define, redefine,
start, remove, and refusing what is not ours. Live and restart resizes need
real QEMU and are covered by tests/e2e/test_transitions_e2e.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import DiskImage, FullVmSpec, ResizeMode
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]  # qemu-img makes the overlay


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor("test:///default") as conn:
        yield conn


@pytest.fixture
def base(tmp_path: Path) -> Path:
    import subprocess

    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def spec(tmp_path: Path, base: Path, a: Allocation, tid: str = "t1") -> FullVmSpec:
    return FullVmSpec(
        name="web1",
        transition_id=tid,
        allocation=a,
        max_vcpus=4,
        max_memory_mib=a.memory_mib,
        accelerator=Accelerator.TCG,
        image=DiskImage(base),
        vm_dir=tmp_path / "vms" / "web1",
        created_at="now",
    )


def test_define_redefine_start_remove(hv: LibvirtHypervisor, tmp_path: Path, base: Path) -> None:
    hv.define_full_vm(spec(tmp_path, base, Allocation(2, 1024, 300)))
    info = hv.full_vm_info("web1")
    assert info is not None and not info["running"]
    assert (info["vcpus"], info["memory_mib"], info["iops"]) == (2, 1024, 300)
    assert [n for n, _ in hv.list_managed_vms()] == ["web1"]
    assert "web1" not in [n for n, _ in hv.list_shadows()]
    # The prediction moved: the same transition redefines its pending VM.
    hv.define_full_vm(spec(tmp_path, base, Allocation(3, 2048, None)))
    info = hv.full_vm_info("web1")
    assert info is not None and (info["vcpus"], info["memory_mib"], info["iops"]) == (3, 2048, None)
    assert hv.resize_mode("web1", Allocation(1, 512)) is ResizeMode.OFFLINE
    assert hv.start_full_vm("web1") is True
    assert hv.start_full_vm("web1") is False  # idempotent: never a second start
    with pytest.raises(HypervisorError, match="running"):
        hv.define_full_vm(spec(tmp_path, base, Allocation(1, 2048)))
    assert hv.remove_full_vm("web1") is True
    assert hv.full_vm_info("web1") is None
    assert not (tmp_path / "vms" / "web1").exists()
    assert hv.remove_full_vm("web1") is False


def test_another_transition_cannot_take_the_name(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512)))
    try:
        with pytest.raises(HypervisorError, match="does not belong"):
            hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512), tid="t2"))
    finally:
        hv.remove_full_vm("web1")


def test_domains_that_are_not_ours_are_refused(hv: LibvirtHypervisor, tmp_path: Path) -> None:
    # The test driver's own domain "test" carries no vmshadow metadata.
    with pytest.raises(HypervisorError, match="not a VM vmshadow"):
        hv.remove_full_vm("test")
    with pytest.raises(HypervisorError, match="not a VM vmshadow"):
        hv.start_full_vm("test")
    assert hv.full_vm_info("test") is not None
    assert hv.state("test") is not None
