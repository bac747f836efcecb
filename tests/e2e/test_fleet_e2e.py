"""One transition on the real local libvirt (``qemu:///system``) through the real
service process with PostgreSQL as its store: placed on the pool's one host,
launched once, recorded with its placement."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_helpers import service

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pgserver import PgServer, pg_server
from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.store.db import make_engine
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


@pytest.fixture
def vm_name(hv: LibvirtHypervisor) -> Iterator[str]:
    name = f"e2e-pg-{uuid.uuid4().hex[:8]}"
    yield name
    if hv.state(name) is not None:
        hv.remove_full_vm(name)


def test_fast_launch_on_postgresql_with_placement(
    settings: Settings, hv: LibvirtHypervisor, postgres: PgServer, vm_name: str
) -> None:
    url = postgres.create_database()
    env = {"VMSHADOW_DATABASE_URL": url, "VMSHADOW_REFINE_ROUNDS": "0"}
    if settings.accelerator == "auto":
        env["VMSHADOW_ACCELERATOR"] = "tcg"  # the KVM probe is another test's business
    with service(settings, **env) as run:
        r = run.call(
            "POST",
            "/transitions",
            json={
                "vm_name": vm_name,
                "profile": "smoke",
                "fast_launch": True,
                "requested": {"vcpus": 1, "memory_mib": 512},
            },
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        t = run.wait_state(tid, "completed", timeout=300)
        assert t["placement"] == {
            "shadow_host": "local",
            "vm_host": "local",
            "reason": "on local, where its shadow measured",
        }
        hosts = run.call("GET", "/hosts").json()
        assert [h["name"] for h in hosts] == ["local"]
        assert hosts[0]["booked_vcpus"] >= t["final"]["vcpus"]  # the VM still runs there
    info = hv.full_vm_info(vm_name)
    assert info is not None and info["running"]
    assert [n for n, m in hv.list_shadows() if m.transition_id == tid] == []
    engine = make_engine(url)
    try:
        events = Store(engine).events(tid)
        assert sum(1 for e in events if " started " in e.message) == 1
        assert [e.state for e in events if e.kind == "state"][-1] == "completed"
    finally:
        engine.dispose()
