"""The full VM's lifecycle through libvirt's test driver: define, redefine,
resize (live, restart, offline), start, remove, and refusing what is not ours.

What only real QEMU shows is in tests/e2e/test_fullvm_e2e.py: the guest
onlining hot-plugged vCPUs and following the balloon, the live IOPS cap (the
test driver refuses any ``total_iops_sec``), graceful shutdown through the
agent, and undefining with the NVRAM and checkpoint flags (which the test
driver refuses as unsupported; ``hypervisor.support`` leaves them out there).

``test:///default`` keeps its state while any connection to it is open in
this process (a domain object held by a traceback is enough), so every test
removes what it defined.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError, HypervisorError
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import (
    BuiltinImage,
    DiskImage,
    FullVmSpec,
    GuestSetup,
    ResizeMode,
    VmVolumes,
    parse_network,
)
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]  # qemu-img makes the overlay
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqQ probe@test"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def spec(
    tmp_path: Path,
    base: Path,
    a: Allocation,
    tid: str = "t1",
    *,
    name: str = "web1",
    max_vcpus: int = 4,
    max_memory_mib: int | None = None,
    network: str = "user",
) -> FullVmSpec:
    return FullVmSpec(
        name=name,
        transition_id=tid,
        allocation=a,
        max_vcpus=max_vcpus,
        max_memory_mib=max_memory_mib or a.memory_mib,
        accelerator=Accelerator.TCG,
        image=DiskImage(base, virtual_size=64 << 20),
        vm_dir=tmp_path / "vms" / name,
        created_at="now",
        guest=GuestSetup(network=parse_network(network), ssh_keys=(KEY,)),
        volumes=VmVolumes(f"vms-{tmp_path.name}", tmp_path / "vm-disks"),
    )


def sizes(hv: LibvirtHypervisor, name: str = "web1") -> tuple[object, ...]:
    info = hv.full_vm_info(name)
    assert info is not None
    return (info["vcpus"], info["memory_mib"], info["iops"])


def persistent_sizes(name: str = "web1") -> tuple[str | None, str | None, str | None]:
    """The definition libvirt would boot next, read on a second connection."""
    conn = libvirt.open("test:///default")
    try:
        root = ET.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        conn.close()
    vcpu = root.find("vcpu")
    assert vcpu is not None
    return vcpu.get("current", vcpu.text), vcpu.text, root.findtext("currentMemory")


def test_define_redefine_start_remove(hv: LibvirtHypervisor, tmp_path: Path, base: Path) -> None:
    hv.define_full_vm(spec(tmp_path, base, Allocation(2, 1024, 300), network="default"))
    info = hv.full_vm_info("web1")
    assert info is not None and not info["running"] and info["state"] == "shut off"
    assert sizes(hv) == (2, 1024, 300)
    pool = f"vms-{tmp_path.name}"
    # The root disk is a volume of the pool. The seed is a file vmshadow writes
    # and libvirt finds at refresh, which the test driver's pools never do
    # (on real libvirt both are volumes: tests/e2e/test_store_vm_e2e.py).
    assert sorted(hv.pool_volumes(pool)) == ["web1-t1.qcow2"]
    assert (tmp_path / "vm-disks" / "web1-t1-seed.iso").stat().st_mode & 0o777 == 0o600
    info = hv.full_vm_info("web1")
    # The test driver drops <qemu:commandline>, so user networking (and its
    # loopback SSH port) is checked on real QEMU and in the golden XML instead.
    assert info is not None and info["network"] == "default" and info["image"] == "base.qcow2"
    assert [n for n, _ in hv.list_managed_vms()] == ["web1"]
    assert "web1" not in [n for n, _ in hv.list_shadows()]
    # The prediction moved: the same transition redefines its pending VM.
    hv.define_full_vm(spec(tmp_path, base, Allocation(3, 2048, None), network="default"))
    assert sizes(hv) == (3, 2048, None)
    assert hv.resize_mode("web1", Allocation(1, 512)) is ResizeMode.OFFLINE
    assert hv.start_full_vm("web1") is True
    assert hv.start_full_vm("web1") is False  # idempotent: never a second start
    info = hv.full_vm_info("web1")
    assert info is not None and info["running"] and info["state"] == "running"
    assert hv.counters("web1") is not None  # host stats work for full VMs too
    with pytest.raises(HypervisorError, match="running"):
        hv.define_full_vm(spec(tmp_path, base, Allocation(1, 2048)))
    assert hv.remove_full_vm("web1") is True
    assert hv.full_vm_info("web1") is None
    assert not (tmp_path / "vms" / "web1").exists()
    assert hv.pool_volumes(pool) == {}
    assert not (tmp_path / "vm-disks" / "web1-t1-seed.iso").exists()
    assert hv.remove_full_vm("web1") is False


@pytest.mark.parametrize("network", ["bridge:virbr9", "none"])
def test_named_network_bridge_and_none_define_and_start(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path, network: str
) -> None:
    """The test driver checks the interface XML (no real network is touched)."""
    hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512), network=network))
    info = hv.full_vm_info("web1")
    assert info is not None and info["network"] == network and info["ssh_port"] is None
    assert hv.start_full_vm("web1") is True
    assert hv.remove_full_vm("web1") is True


def test_builtin_image_gets_a_scratch_disk_and_the_agent_channel(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    image = BuiltinImage(tmp_path / "vmlinuz", tmp_path / "initrd.img", base)
    s = FullVmSpec(**{**spec(tmp_path, base, Allocation(1, 512)).__dict__, "image": image})
    hv.define_full_vm(s)
    vm_dir = tmp_path / "vms" / "web1"
    scratch = tmp_path / "vm-disks" / "web1-t1-scratch.img"
    # Its root disk is a volume of the disk pool, like a store image's.
    assert sorted(hv.pool_volumes(f"vms-{tmp_path.name}")) == ["web1-t1.qcow2"]
    # A pending VM holds no scratch space; starting it allocates the disk.
    assert not scratch.exists()
    assert vm_dir.stat().st_mode & 0o777 == 0o750  # QEMU's group reaches the disks
    assert hv.start_full_vm("web1") is True
    assert scratch.stat().st_size == 1024 * 2**20
    assert os.stat(scratch).st_blocks * 512 >= 1024 * 2**20  # allocated
    assert hv.remove_full_vm("web1") is True
    assert not vm_dir.exists() and not scratch.exists()
    assert hv.pool_volumes(f"vms-{tmp_path.name}") == {}


def test_another_transition_cannot_take_the_name(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512)))
    with pytest.raises(HypervisorError, match=r"\(the VM of transition t1\) and does not belong"):
        hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512), tid="t2"))
    assert sizes(hv) == (1, 512, None)


def test_a_clash_with_a_foreign_domain_creates_nothing(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    # The test driver's own domain "test" carries no vmshadow metadata.
    with pytest.raises(HypervisorError, match=r"test already exists \(not made by vmshadow\)"):
        hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512), name="test"))
    assert not (tmp_path / "vms").exists()


def test_a_failed_define_removes_what_it_made(hv: LibvirtHypervisor, tmp_path: Path) -> None:
    missing = tmp_path / "missing.qcow2"
    image = BuiltinImage(tmp_path / "vmlinuz", tmp_path / "initrd.img", missing)
    s = FullVmSpec(
        **{**spec(tmp_path, missing, Allocation(1, 512)).__dict__, "image": image, "volumes": None}
    )
    with pytest.raises(HypervisorError, match="qemu-img create failed"):
        hv.define_full_vm(s)
    assert not (tmp_path / "vms" / "web1").exists()
    assert hv.full_vm_info("web1") is None


def test_a_failed_store_define_removes_its_volumes(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    s = spec(tmp_path, base, Allocation(1, 512))
    bad = FullVmSpec(**{**s.__dict__, "guest": GuestSetup(disk_gib=1, user="probe")})
    object.__setattr__(bad.image, "virtual_size", 2 << 30)  # the image is bigger than --disk
    with pytest.raises(ConfigError, match="disk_gib"):
        hv.define_full_vm(bad)
    assert hv.pool_volumes(f"vms-{tmp_path.name}") == {}
    assert not (tmp_path / "vms" / "web1").exists() and hv.full_vm_info("web1") is None


def test_set_allocation_while_stopped_within_maxima(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512), max_memory_mib=1024))
    hv.set_full_vm_allocation("web1", Allocation(3, 768, 200))
    assert sizes(hv) == (3, 768, 200)
    hv.set_full_vm_allocation("web1", Allocation(2, 1024, None))
    assert sizes(hv) == (2, 1024, None)
    # The message starts with the field. (No `as caught`: its traceback would
    # keep the connection, and with it the test driver's state, alive.)
    with pytest.raises(ConfigError, match="^vcpus: 5 is above web1's maximum of 4"):
        hv.set_full_vm_allocation("web1", Allocation(5, 512))
    with pytest.raises(ConfigError, match="^memory_mib: 1280 MiB is above"):
        hv.set_full_vm_allocation("web1", Allocation(1, 1280))
    assert sizes(hv) == (2, 1024, None)
    hv.start_full_vm("web1")
    with pytest.raises(HypervisorError, match="running"):
        hv.set_full_vm_allocation("web1", Allocation(1, 512))


def test_resize_live_then_restart_then_offline(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    hv.define_full_vm(spec(tmp_path, base, Allocation(1, 512), max_memory_mib=1024))
    hv.start_full_vm("web1")
    # Within the maxima: vCPU hot-plug and the balloon, live and in the definition.
    assert hv.resize_mode("web1", Allocation(3, 768)) is ResizeMode.LIVE
    assert hv.apply_resize("web1", Allocation(3, 768)) is ResizeMode.LIVE
    assert sizes(hv) == (3, 768, None)
    assert persistent_sizes() == ("3", "4", str(768 * 1024))
    # Beyond the maxima: the definition grows and the VM restarts with it.
    assert hv.resize_mode("web1", Allocation(6, 2048)) is ResizeMode.RESTART
    assert hv.apply_resize("web1", Allocation(6, 2048)) is ResizeMode.RESTART
    info = hv.full_vm_info("web1")
    assert info is not None and info["running"]
    keys = ("vcpus", "max_vcpus", "memory_mib", "max_memory_mib")
    assert [info[k] for k in keys] == [6, 6, 2048, 2048]
    # The test driver cannot cap a running disk's IOPS: that takes a restart here.
    assert hv.resize_mode("web1", Allocation(6, 2048, 500)) is ResizeMode.RESTART
    assert hv.apply_resize("web1", Allocation(6, 2048, 500)) is ResizeMode.RESTART
    assert sizes(hv) == (6, 2048, 500)
    # Stopped behind vmshadow's back (hv.destroy would also undefine it).
    conn = libvirt.open("test:///default")
    try:
        conn.lookupByName("web1").destroy()
    finally:
        conn.close()
    assert hv.resize_mode("web1", Allocation(1, 512)) is ResizeMode.OFFLINE
    assert hv.apply_resize("web1", Allocation(1, 512)) is ResizeMode.OFFLINE
    assert sizes(hv) == (1, 512, None)
    assert not hv.is_running("web1")


def test_domains_that_are_not_ours_are_refused(hv: LibvirtHypervisor) -> None:
    for verb in (hv.remove_full_vm, hv.start_full_vm):
        with pytest.raises(HypervisorError, match="not a VM vmshadow"):
            verb("test")
    with pytest.raises(HypervisorError, match="not a VM vmshadow"):
        hv.apply_resize("test", Allocation(1, 512))
    with pytest.raises(HypervisorError, match="no VM named nope"):
        hv.resize_mode("nope", Allocation(1, 512))
    info = hv.full_vm_info("test")
    assert info is not None and info["vm_dir"] is None
    assert hv.list_managed_vms() == []


def test_remove_never_deletes_a_folder_named_otherwise(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    odd = tmp_path / "shared-folder"
    s = FullVmSpec(**{**spec(tmp_path, base, Allocation(1, 512)).__dict__, "vm_dir": odd})
    hv.define_full_vm(s)
    (odd / "someone-elses.txt").write_text("keep me")
    assert hv.remove_full_vm("web1") is True
    assert sorted(p.name for p in odd.iterdir()) == ["someone-elses.txt"]
