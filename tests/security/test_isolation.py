"""A shadow has no network: nothing in its domain XML, nothing libvirt adds when it
defines it (checked on the test driver), and, from inside a real guest, only ``lo``
(tests/e2e/test_faults_e2e.py, and ShadowSession refuses any other answer)."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmshadow.domain.shadow import Accelerator, ShadowSize, ShadowSpec
from vmshadow.hypervisor.domainxml import shadow_domain_xml
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = pytest.mark.security

# Anything that could reach a network or the host's files and devices.
FORBIDDEN = ("interface", "hostdev", "filesystem", "redirdev", "smartcard", "shmem", "vsock")


def spec(tmp_path: Path) -> ShadowSpec:
    run = tmp_path / "s1"
    run.mkdir(exist_ok=True)
    return ShadowSpec(
        shadow_id="sec1",
        size=ShadowSize(),
        accelerator=Accelerator.TCG,
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        root_disk=run / "root.qcow2",
        scratch_disk=run / "scratch.img",
        console_log=run / "console.log",
        run_dir=run,
        created_at="2026-11-28T12:00:00Z",
        owner=f"{socket.gethostname()}:{os.getpid()}",
    )


def assert_isolated(xml: str) -> None:
    devices = ET.fromstring(xml).find("devices")
    assert devices is not None
    present = {child.tag for child in devices}
    assert not present & set(FORBIDDEN), present
    # Only the agent's channel and a file-backed console reach outside the guest.
    assert [c.get("type") for c in devices.findall("channel")] == ["unix"]
    assert [s.get("type") for s in devices.findall("serial")] == ["file"]
    assert devices.findall("console") == [] or all(
        c.get("type") in ("file", "pty") for c in devices.findall("console")
    )


def test_shadow_domain_xml_has_no_network(tmp_path: Path) -> None:
    assert_isolated(shadow_domain_xml(spec(tmp_path)))


@pytest.mark.libvirt
def test_libvirt_adds_no_network_when_it_starts_a_shadow(tmp_path: Path) -> None:
    with LibvirtHypervisor("test:///default") as hv:
        s = spec(tmp_path)
        hv.start_shadow(s)
        try:
            assert_isolated(hv._lookup(s.name).XMLDesc(0))
        finally:
            hv.destroy(s.name)
