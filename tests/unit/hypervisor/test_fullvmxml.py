"""The full VM's domain XML against golden files (regenerate with
``VMSHADOW_REGEN_GOLDEN=1``, see test_domainxml), and the helpers that change
libvirt's XML of a defined VM."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_domainxml import check_golden

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import (
    BuiltinImage,
    DiskImage,
    FullVmSpec,
    GuestSetup,
    VmVolumes,
    parse_network,
    validate_vm_name,
)
from vmshadow.hypervisor.domainxml import parse_metadata
from vmshadow.hypervisor.fullvmxml import (
    QEMU_NS,
    configured_size,
    disk_targets,
    full_vm_domain_xml,
    image_of,
    iops_of,
    network_of,
    user_network_port,
    with_allocation,
    with_user_network_port,
    with_uuid,
    workload_disk,
)
from vmshadow.hypervisor.support import LiveSize

IMG = Path("/var/lib/vmshadow/images/0123456789abcdef")


def spec(
    image: BuiltinImage | DiskImage | None = None,
    iops: int | None = 400,
    network: str = "user",
) -> FullVmSpec:
    store = isinstance(image, DiskImage)
    return FullVmSpec(
        name="web1",
        transition_id="t-1",
        allocation=Allocation(2, 1024, iops),
        max_vcpus=4,
        max_memory_mib=1024,
        accelerator=Accelerator.TCG,
        image=image or BuiltinImage(IMG / "vmlinuz", IMG / "initrd.img", IMG / "base.qcow2"),
        vm_dir=Path("/var/lib/vmshadow/vms/web1"),
        created_at="2026-11-28T12:00:00Z",
        owner="host:42:abc",
        guest=GuestSetup(network=parse_network(network)) if store else None,
        volumes=VmVolumes("vmshadow-vms", Path("/var/lib/vmshadow/vm-disks")) if store else None,
        ssh_port=2222 if store and network == "user" else None,
    )


def test_builtin_image_vm_matches_golden() -> None:
    check_golden("fullvm-builtin.xml", full_vm_domain_xml(spec()))


STORE_IMAGE = DiskImage(Path("/var/lib/vmshadow/user-images/debian12"), virtual_size=2 << 30)


@pytest.mark.parametrize(
    ("network", "golden"),
    [
        ("user", "fullvm-disk.xml"),
        ("default", "fullvm-disk-network.xml"),
        ("bridge:br0", "fullvm-disk-bridge.xml"),
        ("none", "fullvm-disk-nonic.xml"),
    ],
)
def test_store_image_vm_matches_golden(network: str, golden: str) -> None:
    """A store image's VM as virt-install would make it: pool volume root disk,
    NoCloud seed CD-ROM, the NIC asked for, pty console, guest agent channel."""
    check_golden(golden, full_vm_domain_xml(spec(STORE_IMAGE, iops=None, network=network)))


def test_user_networking_forwards_ssh_from_loopback_only() -> None:
    xml = full_vm_domain_xml(spec(STORE_IMAGE, network="user"))
    args = [a.get("value") for a in ET.fromstring(xml).iter(f"{{{QEMU_NS}}}arg")]
    assert args[1] == (
        "user,id=vmshadow-user0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
    ), "the guest must be reachable only from this host, and reach nothing"
    assert "addr=0x9" in str(args[3])
    assert user_network_port(xml) == 2222 and network_of(xml) == "user"
    moved = with_user_network_port(xml, 40022)
    assert user_network_port(moved) == 40022 and "2222" not in moved
    assert ET.fromstring(xml).find("devices/interface") is None


def test_named_network_and_bridge_are_libvirt_interfaces() -> None:
    for network, kind, attr in (
        ("default", "network", "network"),
        ("bridge:br0", "bridge", "bridge"),
    ):
        xml = full_vm_domain_xml(spec(STORE_IMAGE, network=network))
        iface = ET.fromstring(xml).find("devices/interface")
        assert iface is not None and iface.get("type") == kind
        assert iface.find("source").get(attr) == network.removeprefix("bridge:")  # type: ignore[union-attr]
        assert user_network_port(xml) is None and network_of(xml) == network


def test_store_image_iops_cap_skips_the_seed_cdrom() -> None:
    xml = full_vm_domain_xml(spec(STORE_IMAGE, iops=300))
    assert workload_disk(xml) == "vda" and iops_of(xml) == 300
    changed = with_allocation(xml, Allocation(2, 1024, 500))
    assert iops_of(changed) == 500 and image_of(xml) == "debian12"


def test_sizes_maxima_and_metadata() -> None:
    root = ET.fromstring(full_vm_domain_xml(spec()))
    vcpu = root.find("vcpu")
    assert vcpu is not None and (vcpu.text, vcpu.get("current")) == ("4", "2")
    assert root.findtext("currentMemory") == "1024"
    # The built-in image's root disk is never capped: only its scratch disk.
    assert [t.text for t in root.findall("devices/disk/iotune/total_iops_sec")] == ["400"]
    capped = [d.find("target") for d in root.findall("devices/disk") if d.find("iotune")]
    assert [t.get("dev") for t in capped if t is not None] == ["vdb"]
    assert root.findall("devices/interface") == []
    meta = parse_metadata(ET.tostring(root, encoding="unicode"))
    assert meta is not None and meta.role == "vm" and meta.transition_id == "t-1"


@pytest.mark.parametrize("name", ["", "Web1", "1web", "a" * 64, "vmshadow-shadow-x", "we b"])
def test_bad_vm_names(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_vm_name(name)
    assert caught.value.field == "name"


def test_maxima_below_allocation_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        FullVmSpec(**{**spec().__dict__, "max_vcpus": 1})
    assert caught.value.field == "max_vcpus"


# What libvirt returns for a defined VM: memory in KiB, its own attribute order.
LIBVIRT_XML = """<domain type='qemu'>
  <name>web1</name>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <devices>
    <disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'>
      <target dev='vdb' bus='virtio'/>
      <iotune><total_iops_sec>300</total_iops_sec></iotune>
    </disk>
  </devices>
</domain>"""


def test_configured_size_reads_libvirts_kib() -> None:
    assert configured_size(LIBVIRT_XML) == LiveSize(1, 2, 512, 1024, 300)
    assert disk_targets(LIBVIRT_XML) == ["vda", "vdb"]


def test_with_allocation_keeps_maxima_unless_asked() -> None:
    xml = with_allocation(LIBVIRT_XML, Allocation(2, 768, 500))
    assert configured_size(xml) == LiveSize(2, 2, 768, 1024, 500)
    # Only the workload's disk is capped (the last one).
    assert [t.text for t in ET.fromstring(xml).iter("total_iops_sec")] == ["500"]
    assert workload_disk(xml) == "vdb"
    grown = with_allocation(LIBVIRT_XML, Allocation(4, 2048), raise_maxima=True)
    assert configured_size(grown) == LiveSize(4, 4, 2048, 2048, None)
    assert ET.fromstring(grown).find("devices/disk/iotune") is None  # no cap: no <iotune>
    # Growing never shrinks a maximum.
    assert configured_size(with_allocation(LIBVIRT_XML, Allocation(1, 256), raise_maxima=True)) == (
        LiveSize(1, 2, 256, 1024, None)
    )


def test_with_uuid_keeps_the_domain_on_redefinition() -> None:
    uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    root = ET.fromstring(with_uuid(full_vm_domain_xml(spec()), uuid))
    assert root.findtext("uuid") == uuid
