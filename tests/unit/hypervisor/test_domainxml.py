"""Shadow domain XML against a golden file.

Regenerate after an intended change with ``VMSHADOW_REGEN_GOLDEN=1 pytest tests/unit/hypervisor``
and review the diff like code.
"""

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from vmshadow.domain.shadow import Accelerator, ShadowSize, ShadowSpec
from vmshadow.hypervisor.domainxml import (
    parse_metadata,
    parse_metadata_element,
    shadow_domain_xml,
)

GOLDEN = Path(__file__).parent / "golden"


def spec(accel: Accelerator = Accelerator.TCG) -> ShadowSpec:
    run = Path("/var/lib/vmshadow/runs/abc123")
    img = Path("/var/lib/vmshadow/images/0123456789abcdef")
    return ShadowSpec(
        shadow_id="abc123",
        size=ShadowSize(),
        accelerator=accel,
        kernel=img / "vmlinuz",
        initrd=img / "initrd.img",
        root_disk=run / "root.qcow2",
        scratch_disk=run / "scratch.img",
        console_log=run / "console.log",
        run_dir=run,
        created_at="2026-11-28T12:00:00Z",
        transition_id="t-1",
        owner="host:42",
        base=img / "base.qcow2",
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VMSHADOW_REGEN_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; regenerate if intended"


def test_tcg_shadow_matches_golden() -> None:
    check_golden("shadow-tcg.xml", shadow_domain_xml(spec()))


def test_kvm_shadow_differs_only_in_type() -> None:
    tcg = shadow_domain_xml(spec())
    kvm = shadow_domain_xml(spec(Accelerator.KVM))
    first_kvm, rest_kvm = kvm.split("\n", 1)
    first_tcg, rest_tcg = tcg.split("\n", 1)
    assert rest_kvm == rest_tcg
    assert 'type="kvm"' in first_kvm and 'type="qemu"' in first_tcg


def test_shadow_has_no_network_interface_and_one_agent_channel() -> None:
    root = ET.fromstring(shadow_domain_xml(spec()))
    assert root.findall("devices/interface") == []
    channels = root.findall("devices/channel/target")
    assert [c.get("name") for c in channels] == ["org.vmshadow.agent.0"]


def test_metadata_round_trips() -> None:
    meta = parse_metadata(shadow_domain_xml(spec()))
    assert meta is not None
    assert (meta.role, meta.shadow_id, meta.transition_id, meta.owner) == (
        "shadow",
        "abc123",
        "t-1",
        "host:42",
    )
    assert meta.run_dir == "/var/lib/vmshadow/runs/abc123"


def test_metadata_element_as_libvirt_returns_it() -> None:
    # virDomainGetMetadata gives the element back without its namespace
    # (the same from the qemu and the test driver).
    whole = parse_metadata(shadow_domain_xml(spec()))
    alone = parse_metadata_element(
        "<shadow>\n  <role>shadow</role>\n  <id>abc123</id>\n"
        "  <run-dir>/var/lib/vmshadow/runs/abc123</run-dir>\n"
        f"  <created-at>{whole.created_at if whole else ''}</created-at>\n"
        "  <transition>t-1</transition>\n  <owner>host:42</owner>\n</shadow>"
    )
    assert alone == whole
    assert parse_metadata_element("<other><role>vm</role></other>") is None


def test_foreign_domain_has_no_metadata() -> None:
    assert parse_metadata("<domain type='qemu'><name>x</name></domain>") is None
