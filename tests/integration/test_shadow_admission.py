"""Admission: the controller takes on only as many transitions that need a
shadow as it has shadow slots; the rest wait in ``requested``, unleased, and
are taken in the order they came as slots free up."""

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

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState


@pytest.fixture
def one_slot(tmp_path: Path) -> Iterator[tuple[TransitionService, Controller]]:
    uri = write_host_xml(tmp_path / "h.xml", cpus=16, memory_mib=65536, cpu_model="m1")
    hosts = [{"name": "h", "uri": uri}]
    settings = fleet_settings(tmp_path, hosts, f"sqlite:///{tmp_path / 'vmshadow.db'}")
    # A long observation: a launched VM's worker lives on well past its shadow.
    settings = settings.model_copy(
        update={"controller": settings.controller.model_copy(update={"observe_s": 120})}
    )
    with running_controller(settings) as (service, controller, _pool):
        yield service, controller


def test_waiting_transitions_are_not_taken_until_a_slot_frees(
    one_slot: tuple[TransitionService, Controller],
) -> None:
    svc, _controller = one_slot
    tids = [
        svc.create(NewTransition(TransitionKind.LAUNCH, f"adm{i}", "smoke", Allocation(1, 512))).id
        for i in range(3)
    ]
    seen_in_shadow: list[set[str]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        # Newest first: admission is oldest first, so an older one read after a
        # newer one was claimed is past its shadow already (a consistent view).
        rows = {t: svc.store.get(t) for t in reversed(tids)}
        states = {t: S(r.state) for t, r in rows.items()}
        shadowing = {t for t, s in states.items() if s in (S.SHADOWING, S.PROFILING)}
        claimed = {t for t, r in rows.items() if states[t] is S.REQUESTED and r.lease_owner}
        seen_in_shadow.append(shadowing)
        assert len(shadowing | claimed) <= 1, f"more than the one slot in use: {states}"
        if all(s is S.PREDICTED for s in states.values()):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"not all predicted: {states}")
    # Taken one at a time, oldest first.
    order = [next(iter(s)) for s in seen_in_shadow if s]
    firsts = list(dict.fromkeys(order))
    assert firsts == tids
    events = [e.message for t in tids for e in svc.store.events(t)]
    assert not any("waiting for a free shadow slot" in m for m in events)


def test_a_launched_vm_under_observation_does_not_hold_the_shadow_slot(
    one_slot: tuple[TransitionService, Controller],
) -> None:
    svc, _controller = one_slot
    fast = NewTransition(
        TransitionKind.LAUNCH, "obs1", "smoke", Allocation(1, 512), fast_launch=True
    )
    t1 = svc.create(fast).id
    deadline = time.monotonic() + 120
    while S(svc.store.get(t1).state) is not S.RUNNING:
        assert time.monotonic() < deadline, svc.store.get(t1).state
        time.sleep(0.1)
    # t1's worker now observes its VM for 120 s; t2's shadow must not wait for that.
    t2 = svc.create(NewTransition(TransitionKind.LAUNCH, "obs2", "smoke", Allocation(1, 512))).id
    while S(svc.store.get(t2).state) is not S.PREDICTED:
        assert time.monotonic() < deadline, svc.store.get(t2).state
        time.sleep(0.1)
    assert S(svc.store.get(t1).state) is S.RUNNING  # still under observation
