"""The full VM's IOPS cap as rate, burst rate and burst length in ``<iotune>``
(golden file regenerated with ``VMSHADOW_REGEN_GOLDEN=1``), and reading and
changing it in libvirt's XML of a defined VM."""

import dataclasses
import xml.etree.ElementTree as ET

from test_domainxml import check_golden
from test_fullvmxml import STORE_IMAGE, spec

from vmshadow.domain.allocation import Allocation
from vmshadow.hypervisor.fullvmxml import (
    full_vm_domain_xml,
    iops_of,
    iotune_of,
    with_allocation,
)

BURST = Allocation(2, 1024, 400, iops_burst=4000, iops_burst_s=5)


def tunes(xml: str) -> list[list[tuple[str, str]]]:
    """Each disk's <iotune> children (tag, text), in document order."""
    root = ET.fromstring(xml)
    return [
        [(el.tag, el.text or "") for el in tune]
        for tune in (d.find("iotune") for d in root.findall("devices/disk"))
        if tune is not None
    ]


def test_builtin_vm_with_a_burst_matches_golden() -> None:
    xml = full_vm_domain_xml(dataclasses.replace(spec(), allocation=BURST))
    check_golden("fullvm-builtin-burst.xml", xml)
    # libvirt's order, on the workload's (scratch) disk only.
    assert tunes(xml) == [
        [
            ("total_iops_sec", "400"),
            ("total_iops_sec_max", "4000"),
            ("total_iops_sec_max_length", "5"),
        ]
    ]
    assert iotune_of(xml) == (400, 4000, 5) and iops_of(xml) == 400


def test_store_image_vm_burst_without_length_goes_on_its_root_disk() -> None:
    a = Allocation(2, 1024, 300, iops_burst=900)
    xml = full_vm_domain_xml(dataclasses.replace(spec(STORE_IMAGE), allocation=a))
    assert tunes(xml) == [[("total_iops_sec", "300"), ("total_iops_sec_max", "900")]]
    assert iotune_of(xml) == (300, 900, None)


def test_a_rate_alone_writes_no_burst() -> None:
    xml = full_vm_domain_xml(spec(iops=400))
    assert tunes(xml) == [[("total_iops_sec", "400")]]
    assert iotune_of(xml) == (400, None, None)


def test_with_allocation_sets_changes_and_clears_the_burst() -> None:
    plain = full_vm_domain_xml(spec(iops=400))
    burst = with_allocation(plain, BURST)
    assert iotune_of(burst) == (400, 4000, 5)
    shorter = with_allocation(burst, Allocation(2, 1024, 500, iops_burst=600, iops_burst_s=2))
    assert tunes(shorter) == [
        [
            ("total_iops_sec", "500"),
            ("total_iops_sec_max", "600"),
            ("total_iops_sec_max_length", "2"),
        ]
    ]
    # A rate alone must clear the old burst: libvirt refuses a length without it.
    assert tunes(with_allocation(shorter, Allocation(2, 1024, 500))) == [
        [("total_iops_sec", "500")]
    ]
    assert tunes(with_allocation(shorter, Allocation(2, 1024))) == []


def test_a_zero_in_libvirts_xml_reads_as_unset() -> None:
    xml = with_allocation(full_vm_domain_xml(spec(iops=400)), BURST).replace(
        "<total_iops_sec_max_length>5<", "<total_iops_sec_max_length>0<"
    )
    assert iotune_of(xml) == (400, 4000, None)
