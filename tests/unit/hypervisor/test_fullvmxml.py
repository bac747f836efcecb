"""The full VM's domain XML against golden files."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_domainxml import check_golden

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import BuiltinImage, DiskImage, FullVmSpec, validate_vm_name
from vmshadow.hypervisor.domainxml import parse_metadata
from vmshadow.hypervisor.fullvmxml import full_vm_domain_xml

IMG = Path("/var/lib/vmshadow/images/0123456789abcdef")


def spec(image: BuiltinImage | DiskImage | None = None, iops: int | None = 400) -> FullVmSpec:
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
    )


def test_builtin_image_vm_matches_golden() -> None:
    check_golden("fullvm-builtin.xml", full_vm_domain_xml(spec()))


def test_disk_image_vm_matches_golden() -> None:
    xml = full_vm_domain_xml(spec(DiskImage(Path("/srv/images/debian.qcow2")), iops=None))
    check_golden("fullvm-disk.xml", xml)


def test_sizes_maxima_and_metadata() -> None:
    root = ET.fromstring(full_vm_domain_xml(spec()))
    vcpu = root.find("vcpu")
    assert vcpu is not None and (vcpu.text, vcpu.get("current")) == ("4", "2")
    assert root.findtext("currentMemory") == "1024"
    assert [t.text for t in root.findall("devices/disk/iotune/total_iops_sec")] == ["400", "400"]
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
