"""The libvirt adapter against libvirt's own test driver (a real driver, no guests)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.shadow import Accelerator, ShadowSize, ShadowSpec
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.shadow.reaper import reap_orphans

pytestmark = pytest.mark.libvirt


def make_spec(tmp_path: Path, sid: str, owner: str) -> ShadowSpec:
    run = tmp_path / sid
    run.mkdir()
    return ShadowSpec(
        shadow_id=sid,
        size=ShadowSize(),
        accelerator=Accelerator.TCG,
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        root_disk=run / "root.qcow2",
        scratch_disk=run / "scratch.img",
        console_log=run / "console.log",
        run_dir=run,
        created_at="2026-11-28T12:00:00Z",
        owner=owner,
    )


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    # test:///default is one host per process while any connection to it is
    # open (a service another test left running keeps it alive), so each test
    # removes the shadows it started.
    with LibvirtHypervisor("test:///default") as h:
        before = {name for name, _ in h.list_shadows()}
        yield h
        for name, _ in h.list_shadows():
            if name not in before:
                h.destroy(name)


def test_start_list_destroy(hv: LibvirtHypervisor, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "s1", f"{socket.gethostname()}:{os.getpid()}")
    hv.start_shadow(spec)
    assert hv.is_running(spec.name)
    shadows = dict(hv.list_shadows())
    assert shadows[spec.name].shadow_id == "s1"
    assert shadows[spec.name].run_dir == str(spec.run_dir)
    assert hv.destroy(spec.name) is True
    assert hv.destroy(spec.name) is False  # idempotent
    assert spec.name not in dict(hv.list_shadows())
    assert hv.counters(spec.name) is None


def test_counters_from_domain_stats(hv: LibvirtHypervisor, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "s2", "")
    hv.start_shadow(spec)
    c = hv.counters(spec.name)
    assert c is not None and c.cpu_time_ns >= 0 and c.rd_reqs >= 0


def test_duplicate_start_is_a_clear_error(hv: LibvirtHypervisor, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "s3", "")
    hv.start_shadow(spec)
    with pytest.raises(HypervisorError, match="cannot start shadow vmshadow-shadow-s3"):
        hv.start_shadow(spec)


def test_reap_orphans_only_takes_dead_owners(hv: LibvirtHypervisor, tmp_path: Path) -> None:
    me = socket.gethostname()
    alive = make_spec(tmp_path, "alive", f"{me}:{os.getpid()}")
    # PID 2**22 + 1 is above the kernel's pid_max ceiling, so it cannot be alive.
    dead = make_spec(tmp_path, "dead", f"{me}:{2**22 + 1}")
    elsewhere = make_spec(tmp_path, "other", "some-other-host:1")
    for s in (alive, dead, elsewhere):
        hv.start_shadow(s)
    reaped = reap_orphans(hv)
    # (Shadows another test left on the shared test host may be reaped too.)
    assert [n for n in reaped if n in {alive.name, dead.name, elsewhere.name}] == [dead.name]
    assert not dead.run_dir.exists()
    assert alive.run_dir.exists() and hv.is_running(alive.name)
    assert hv.is_running(elsewhere.name)


def test_unreachable_uri_is_a_clear_error() -> None:
    with pytest.raises(HypervisorError, match="cannot connect to libvirt"):
        LibvirtHypervisor("test:///nonexistent-file.xml")


def test_host_facts(hv: LibvirtHypervisor) -> None:
    assert hv.host_resources()["cpus"] > 0
    assert hv.versions()["driver"] == "TEST"
