"""A launched VM's usage so far, by the prediction's own definition of a requirement."""

from __future__ import annotations

from pathlib import Path

from vmshadow.controller.realized import points_of, realized
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionKind
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store


def _store_with_a_transition(tmp_path: Path) -> tuple[Store, str]:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    store = Store(engine)
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web1", profile="smoke", requested=Allocation(2, 1024)
    ).id
    return store, tid


def test_realized_counts_the_vm_not_the_shadow(tmp_path: Path) -> None:
    store, tid = _store_with_a_transition(tmp_path)
    assert realized(store, tid) is None
    store.add_samples(
        tid, "shadow", 0, [UsagePoint(1.0, Source.HOST, "cpu", 1.0, 400.0, 900.0, 0, 0, 0)]
    )
    assert realized(store, tid) is None
    vm = [
        UsagePoint(float(t), Source.HOST, None, t / 100, 100.0 + t, float(t), 0.0, 0.0, 0.0)
        for t in range(1, 101)
    ]
    store.add_samples(tid, "vm", 0, vm)
    got = realized(store, tid)
    assert got is not None and got.samples == 100 and got.seconds == 99.0
    assert round(got.requirement.vcpus, 2) == 0.95  # P95 of 0.01..1.00
    assert got.requirement.memory_mib == 200.0  # peak
    assert round(got.requirement.iops, 2) == 95.05


def test_guest_processes_and_faults_survive_the_store(tmp_path: Path) -> None:
    """What the history record of a completed transition learns from is read back
    from the store, so the guest-only figures must round-trip (None stays None)."""
    store, tid = _store_with_a_transition(tmp_path)
    guest = UsagePoint(
        1.0, Source.GUEST, "cpu", 0.9, 300.0, 5, 1, 0, 0, forks_ps=12.5, faults_ps=3e4
    )
    host = UsagePoint(1.0, Source.HOST, "cpu", 1.0, None, 5, 1, 0, 0)
    store.add_samples(tid, "shadow", 0, [guest, host])
    assert points_of(store.samples(tid, target="shadow")) == [guest, host]
