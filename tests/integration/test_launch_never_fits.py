"""A decided size that no host of the pool could ever hold fails its transition
at launch with the reason, instead of waiting for room that never comes; the
pending VM it had defined is removed.

The API refuses such a confirmation (test_api); this is the path where the
decision was recorded before the size was known to be too big: a fast launch
decided before the prediction, or a pool that shrank since the confirmation.
The decision is written to the store directly, as either of those leaves it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleet_harness import fleet_settings, running_controller, write_host_xml
from vmshadow.controller.service import NewTransition
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import Decision, TransitionKind, TransitionState

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState


def test_a_size_no_host_could_hold_fails_at_launch_and_leaves_nothing(tmp_path: Path) -> None:
    uri = write_host_xml(tmp_path / "h.xml", cpus=2, memory_mib=4096, cpu_model="m1")
    settings = fleet_settings(
        tmp_path, [{"name": "h", "uri": uri}], f"sqlite:///{tmp_path / 'vmshadow.db'}"
    )
    with running_controller(settings) as (svc, controller, pool):
        tid = svc.create(
            NewTransition(TransitionKind.LAUNCH, "toobig", "smoke", Allocation(1, 512))
        ).id
        deadline = time.monotonic() + 120
        while S(svc.store.get(tid).state) is not S.PREDICTED:
            assert time.monotonic() < deadline, svc.store.get(tid).state
            time.sleep(0.1)
        svc.store.confirm(
            tid,
            decision=Decision.FAST_LAUNCH,
            allocation=Allocation(6, 1024),
            prediction_id=None,
            warnings=[],
            risk_acknowledged=False,
        )
        controller.wake.set()
        while not S(svc.store.get(tid).state).terminal:
            assert time.monotonic() < deadline, svc.store.get(tid).state
            time.sleep(0.1)
        row = svc.store.get(tid)
        assert row.state == S.FAILED.value
        assert row.reason == (
            "no host could ever hold 6 vCPU, 1024 MiB: h has 2 CPUs, 4096 MiB (CPU model m1)"
        )
        while svc.store.get(tid).vm_defined:  # the sweep removes the pending VM
            assert time.monotonic() < deadline, "pending VM never removed"
            time.sleep(0.1)
        hv = pool.connect("h")  # the pool's own connection: the test host lives in it
        assert hv.full_vm_info("toobig") is None
        assert hv.list_shadows() == []
