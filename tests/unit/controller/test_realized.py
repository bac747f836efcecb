"""A launched VM's usage so far, by the prediction's own definition of a requirement."""

from __future__ import annotations

from pathlib import Path

from vmshadow.controller.realized import points_of, realized
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionKind
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store


def _store_with_a_transition(tmp_path: Path, image: str = "builtin") -> tuple[Store, str]:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    store = Store(engine)
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH,
        vm_name="web1",
        profile="smoke",
        requested=Allocation(2, 1024),
        image=image,
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
    # The first minute is the boot: the requirement is over t = 60..100.
    assert got is not None and got.settled and got.samples == 41 and got.seconds == 40.0
    assert round(got.requirement.vcpus, 2) == 0.98  # P95 of 0.60..1.00
    assert got.requirement.memory_mib == 200.0  # peak
    assert round(got.requirement.iops, 2) == 98.0


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


def _vm(t: range, iops: float) -> list[UsagePoint]:
    return [UsagePoint(float(s), Source.HOST, None, 0.5, 300.0, iops, 0.0, 0.0, 0.0) for s in t]


def test_no_verdict_before_enough_samples_after_the_boot(tmp_path: Path) -> None:
    """Root-disk reads while the VM boots were called under-provisioned 28 s after launch."""
    store, tid = _store_with_a_transition(tmp_path)
    store.add_samples(tid, "vm", 0, _vm(range(1, 29), 900.0))  # booting: 900 IOPS
    early = realized(store, tid)
    # Shown over what there is, but not settled: the page says "too early to tell".
    assert early is not None and not early.settled and early.samples == 28
    assert early.requirement.iops == 900.0
    store.add_samples(tid, "vm", 0, _vm(range(29, 79), 40.0))  # t 60..78: 19 after the boot
    assert not realized(store, tid).settled  # type: ignore[union-attr]
    store.add_samples(tid, "vm", 0, _vm(range(79, 80), 40.0))  # the 20th
    got = realized(store, tid)
    assert got is not None and got.settled and got.samples == 20
    assert got.requirement.iops == 40.0  # the boot's 900 IOPS left out


def test_only_a_one_disk_vm_counts_its_iops_against_the_cap(tmp_path: Path) -> None:
    """The built-in image's root disk is not capped, and the counters add every disk."""
    store, builtin = _store_with_a_transition(tmp_path)
    store.add_samples(builtin, "vm", 0, _vm(range(1, 100), 40.0))
    assert realized(store, builtin).iops_all_disks  # type: ignore[union-attr]
    engine_store, own = _store_with_a_transition(tmp_path / "u", image="debian12")
    engine_store.add_samples(own, "vm", 0, _vm(range(1, 100), 40.0))
    assert not realized(engine_store, own).iops_all_disks  # type: ignore[union-attr]
