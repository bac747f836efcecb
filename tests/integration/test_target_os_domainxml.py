"""The domain XML of a shadow of a store image's own OS, against a golden file,
and as libvirt's test driver reads it back.

Regenerate after an intended change with
``VMSHADOW_REGEN_GOLDEN=1 pytest tests/integration/test_target_os_domainxml.py``
and review the diff like code. The built-in shadow's golden file
(``tests/unit/hypervisor/golden/shadow-tcg.xml``) must not move.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from vmshadow.domain.shadow import (
    AGENT_CHANNEL,
    SCRATCH_SERIAL,
    TOOLS_SERIAL,
    Accelerator,
    ShadowSize,
    ShadowSpec,
    TargetOs,
)
from vmshadow.hypervisor.domainxml import parse_metadata, shadow_domain_xml

GOLDEN = Path(__file__).parent / "golden"
RUN = Path("/var/lib/vmshadow/runs/abc123")
STORE = Path("/var/lib/vmshadow/user-images")


def spec(accel: Accelerator = Accelerator.TCG) -> ShadowSpec:
    img = Path("/var/lib/vmshadow/images/0123456789abcdef")
    return ShadowSpec(
        shadow_id="abc123",
        size=ShadowSize(),
        accelerator=accel,
        kernel=img / "vmlinuz",
        initrd=img / "initrd.img",
        root_disk=RUN / "root.qcow2",
        scratch_disk=RUN / "scratch.img",
        console_log=RUN / "console.log",
        run_dir=RUN,
        created_at="2026-11-28T12:00:00Z",
        transition_id="t-1",
        owner="host:42",
        base=img / "base.qcow2",
        target=TargetOs(
            image="web-os",
            chain=((STORE / "web-os", "qcow2"), (STORE / "debian-12", "qcow2")),
            seed=RUN / "seed.iso",
            tools=Path("/var/lib/vmshadow/tools/0123456789abcdef/tools.iso"),
        ),
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VMSHADOW_REGEN_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; regenerate if intended"


def test_tcg_target_os_shadow_matches_golden() -> None:
    check_golden("shadow-target-os-tcg.xml", shadow_domain_xml(spec()))


def test_the_built_in_shadow_is_unchanged_by_the_target_part() -> None:
    builtin = replace(spec(), target=None)
    unit_golden = Path(__file__).parents[1] / "unit" / "hypervisor" / "golden" / "shadow-tcg.xml"
    assert shadow_domain_xml(builtin) == unit_golden.read_text()


def test_boots_from_disk_with_nocloud_forced_and_no_network() -> None:
    root = ET.fromstring(shadow_domain_xml(spec()))
    assert root.findall("devices/interface") == []
    assert root.find("os/kernel") is None and root.find("os/cmdline") is None
    assert root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert root.find("os/smbios").get("mode") == "sysinfo"  # type: ignore[union-attr]
    assert root.findtext("sysinfo/system/entry[@name='serial']") == "ds=nocloud"
    assert [c.get("name") for c in root.findall("devices/channel/target")] == [AGENT_CHANNEL]
    assert root.findtext("memory") == "512" and root.findtext("vcpu") == "1"


def test_disks_overlay_the_chain_and_attach_seed_and_tools_read_only() -> None:
    disks = ET.fromstring(shadow_domain_xml(spec())).findall("devices/disk")
    root, scratch, seed, tools = disks
    # The whole store chain is named, each file never relabelled.
    chain = [s.get("file") for s in root.iter("source")][1:]
    assert chain == [str(STORE / "web-os"), str(STORE / "debian-12")]
    assert all(
        sl.get("relabel") == "no" for b in root.iter("backingStore") for sl in b.iter("seclabel")
    )
    assert scratch.findtext("serial") == SCRATCH_SERIAL
    assert seed.find("readonly") is not None and seed.find("source/seclabel") is None
    assert tools.find("readonly") is not None and tools.findtext("serial") == TOOLS_SERIAL
    assert tools.find("source/seclabel").get("relabel") == "no"  # type: ignore[union-attr]


def test_the_tcg_cache_is_capped_only_under_tcg() -> None:
    tcg = ET.fromstring(shadow_domain_xml(spec()))
    assert tcg.find("features/tcg/tb-cache").text == "128"  # type: ignore[union-attr]
    kvm = ET.fromstring(shadow_domain_xml(spec(Accelerator.KVM)))
    assert kvm.get("type") == "kvm" and kvm.find("features/tcg") is None
    meta = parse_metadata(shadow_domain_xml(spec()))
    assert meta is not None and meta.role == "shadow" and meta.transition_id == "t-1"


@pytest.mark.libvirt
def test_libvirt_reads_it_as_written() -> None:
    conn = libvirt.open("test:///default")
    try:
        dom = conn.createXML(shadow_domain_xml(spec()), 0)
        try:
            back = ET.fromstring(dom.XMLDesc(0))
            assert back.findtext("features/tcg/tb-cache") == "131072"  # KiB
            assert back.findtext("sysinfo/system/entry[@name='serial']") == "ds=nocloud"
            assert back.findall("devices/interface") == []
            assert len(back.findall("devices/disk/readonly")) == 2
        finally:
            dom.destroy()
    finally:
        conn.close()
