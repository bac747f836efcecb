"""The full VM's IOPS cap as rate, burst rate and burst length through libvirt's
test driver: libvirt keeps all three in the definition, and a running VM's
burst changes live (the test driver takes ``setBlockIoTune`` once a burst rate
at or above the rate comes with it; a new rate alone still takes a restart
there, see test_fullvm_test_driver)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import libvirt
import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import (
    DiskImage,
    FullVmSpec,
    GuestSetup,
    ResizeMode,
    VmVolumes,
    parse_network,
)
from vmshadow.hypervisor.fullvmxml import iotune_of
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]  # qemu-img makes the overlay


def burst_spec(tmp_path: Path, a: Allocation) -> FullVmSpec:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    return FullVmSpec(
        name="io1",
        transition_id="t-io",
        allocation=a,
        max_vcpus=2,
        max_memory_mib=a.memory_mib,
        accelerator=Accelerator.TCG,
        image=DiskImage(base, virtual_size=64 << 20),
        vm_dir=tmp_path / "vms" / "io1",
        created_at="now",
        guest=GuestSetup(network=parse_network("user")),
        volumes=VmVolumes(f"vms-{tmp_path.name}", tmp_path / "vm-disks"),
    )


def iotune(live: bool) -> tuple[int | None, int | None, int | None]:
    """The workload disk's IOPS settings as libvirt holds them, on a second
    connection: the running VM's, or the definition it boots next."""
    conn = libvirt.open("test:///default")
    try:
        flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
        return iotune_of(conn.lookupByName("io1").XMLDesc(flags))
    finally:
        conn.close()


def test_rate_burst_and_length_reach_libvirt_and_change_live(
    hv: LibvirtHypervisor, tmp_path: Path
) -> None:
    hv.define_full_vm(burst_spec(tmp_path, Allocation(1, 512, 300, 3000, 5)))
    assert iotune(live=False) == (300, 3000, 5)
    hv.start_full_vm("io1")
    assert iotune(live=True) == (300, 3000, 5)
    # Only the burst changes: live, and into the definition too.
    shorter = Allocation(1, 512, 300, 600, 2)
    assert hv.apply_resize("io1", shorter) is ResizeMode.LIVE
    assert iotune(live=True) == iotune(live=False) == (300, 600, 2)
    # A new rate takes a restart under the test driver; all three follow.
    faster = Allocation(1, 512, 500, 5000, 10)
    assert hv.apply_resize("io1", faster) is ResizeMode.RESTART
    assert iotune(live=True) == iotune(live=False) == (500, 5000, 10)
    # Unchanged: nothing to set.
    assert hv.apply_resize("io1", faster) is ResizeMode.LIVE
    assert iotune(live=True) == (500, 5000, 10)
