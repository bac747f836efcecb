"""Placement on a pool of libvirt test-driver hosts of different sizes and CPU
models, driven by the real controller on a real PostgreSQL store.

Hosts: ``a-small`` (2 CPUs, 4 GiB, model m1), ``b-big`` (16 CPUs, 64 GiB, m1)
and ``c-other`` (64 CPUs, 256 GiB, m2, the freest of all).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_harness import fleet_settings, running_controller, write_host_xml
from vmshadow.controller.engine import Controller
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.hypervisor.pool import HostPool

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[tuple[TransitionService, Controller, HostPool]]:
    sizes = [("a-small", 2, 4096, "m1"), ("b-big", 16, 65536, "m1"), ("c-other", 64, 262144, "m2")]
    hosts = [
        {"name": n, "uri": write_host_xml(tmp_path / f"{n}.xml", cpus=c, memory_mib=m, cpu_model=k)}
        for n, c, m, k in sizes
    ]
    settings = fleet_settings(tmp_path, hosts, pg_url)
    with running_controller(settings) as (service, controller, pool):
        yield service, controller, pool


def wait_state(svc: TransitionService, tid: str, *states: S, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    view: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        view = svc.view(svc.store.get(tid), with_events=True)
        if view["state"] in {s.value for s in states}:
            return view
        if view["terminal"]:
            break
        time.sleep(0.2)
    raise AssertionError(f"{tid} is {view.get('state')}: {[e['message'] for e in view['events']]}")


def launch(svc: TransitionService, name: str) -> str:
    return svc.create(NewTransition(TransitionKind.LAUNCH, name, "smoke", Allocation(1, 512))).id


def vms_on(pool: HostPool) -> dict[str, set[str]]:
    return pool.managed_vms()


def test_vm_follows_its_shadow_or_moves_to_the_freest_host_of_the_same_model(
    fleet: tuple[TransitionService, Controller, HostPool],
) -> None:
    svc, _controller, pool = fleet
    caps = {h["name"]: h for h in svc.hosts()}
    assert (caps["a-small"]["cpus"], caps["b-big"]["memory_mib"]) == (2, 65536)
    assert caps["c-other"]["cpu_model"] == "m2" and caps["a-small"]["free_memory_mib"] is None

    # All empty: the first shadow goes to the first name; the second finds
    # a-small's one shadow slot taken and goes to the next freest, b-big.
    t1 = launch(svc, "fleet-web1")
    v1 = wait_state(svc, t1, S.SHADOWING, S.PROFILING, S.PREDICTED)
    assert v1["placement"]["shadow_host"] == "a-small"
    t2 = launch(svc, "fleet-web2")
    v2 = wait_state(svc, t2, S.SHADOWING, S.PROFILING, S.PREDICTED)
    assert v2["placement"]["shadow_host"] == "b-big"
    assert v2["placement"]["vm_host"] == "b-big"
    assert any("the freest host" in e["message"] for e in v2["events"])

    # T1's user asks for more than a-small has: it moves to b-big (same CPU
    # model), not to c-other, though c-other is freer. T2 fits where it measured.
    wait_state(svc, t1, S.PREDICTED)
    svc.override(t1, Allocation(4, 8192), acknowledge_risk=True)
    wait_state(svc, t2, S.PREDICTED)
    svc.override(t2, Allocation(2, 2048), acknowledge_risk=True)
    v1 = wait_state(svc, t1, S.COMPLETED)
    v2 = wait_state(svc, t2, S.COMPLETED)

    assert v1["placement"]["vm_host"] == "b-big"
    assert v1["placement"]["reason"] == (
        "on b-big: a-small, where its shadow measured, has no room (2 of 2 vCPUs free, "
        "4096 MiB free); b-big is the freest host with the same CPU model (m1)"
    )
    messages = [e["message"] for e in v1["events"]]
    assert "pending VM fleet-web1 removed from a-small" in messages
    assert "VM fleet-web1 started on b-big with 4 vCPU, 8192 MiB" in messages
    assert v2["placement"] == {
        "shadow_host": "b-big",
        "vm_host": "b-big",
        "reason": "on b-big, where its shadow measured",
    }
    # Each VM exists once, on its host; no shadow is left anywhere.
    assert vms_on(pool) == {
        "a-small": set(),
        "b-big": {"fleet-web1", "fleet-web2"},
        "c-other": set(),
    }
    for host in pool.names:
        assert pool.connect(host).list_shadows() == []
        assert pool.connect(host).is_running("fleet-web1") == (host == "b-big")

    # The launched VMs stay booked on b-big; the shadows are not any more.
    caps = {h["name"]: h for h in svc.hosts()}
    assert (caps["b-big"]["booked_vcpus"], caps["b-big"]["booked_memory_mib"]) == (6, 10240)
    assert caps["b-big"]["shadows"] == 0 and caps["a-small"]["booked_vcpus"] == 0
