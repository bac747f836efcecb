"""A pending VM pre-booted while the decision is awaited, on real QEMU, through
the real service: confirmed (resumed at the decided size), overridden past
its maxima (restarted cold, warned before), and cancelled (nothing left).

The built-in image: it boots in seconds and its own agent says when it is up.
One service for the three, without refinement rounds, to keep them short.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from e2e_helpers import wait_for
from service_helpers import ServiceRun, cached_accelerator, service

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]
REQUESTED = {"vcpus": 2, "memory_mib": 1024}


@pytest.fixture(scope="module")
def run(settings: Settings) -> Iterator[ServiceRun]:
    accel = cached_accelerator(settings).value
    with service(
        settings, VMSHADOW_ACCELERATOR=accel, VMSHADOW_REFINE_ROUNDS="0", VMSHADOW_OBSERVE_S="3"
    ) as r:
        yield r


@pytest.fixture
def vm_name(hv: LibvirtHypervisor) -> Iterator[str]:
    name = f"e2e-pb-{uuid.uuid4().hex[:6]}"
    yield name
    if hv.state(name) is not None:
        hv.remove_full_vm(name)


def _messages(t: dict[str, object]) -> list[str]:
    return [str(e["message"]) for e in t["events"]]  # type: ignore[attr-defined,index]


def _paused(run: ServiceRun, name: str) -> tuple[str, dict[str, object]]:
    r = run.call(
        "POST",
        "/transitions",
        json={"vm_name": name, "profile": "smoke", "requested": REQUESTED},
    )
    assert r.status_code == 201, r.text
    tid = str(r.json()["id"])
    run.wait_state(tid, "predicted")
    wait_for(
        "the pre-booted VM paused",
        lambda: any("pre-booted and paused" in m for m in _messages(run.get(tid))),
        timeout=120,
    )
    return tid, run.get(tid)


def test_confirm_resumes_the_prebooted_vm_at_the_decided_size(
    run: ServiceRun, hv: LibvirtHypervisor, vm_name: str
) -> None:
    tid, t = _paused(run, vm_name)
    pre = t["preboot"]
    assert isinstance(pre, dict) and pre["state"] == "paused"
    rec = t["recommended"]
    assert isinstance(rec, dict)
    assert pre["max_memory_mib"] == max(1024, rec["memory_mib"])
    info = hv.full_vm_info(vm_name)
    assert info is not None and info["state"] == "paused"
    # Larger than the recommendation, within the maxima: applied live, no restart.
    chosen = {"vcpus": 2, "memory_mib": 1024, "iops": rec["iops"]}
    review = run.call("POST", f"/transitions/{tid}/override/review", json=chosen).json()
    assert review["needs_restart"] is False, review
    r = run.call("POST", f"/transitions/{tid}/override", json=chosen)
    assert r.status_code == 200, r.text
    t = run.wait_state(tid, "running", "completed", timeout=60)
    info = hv.full_vm_info(vm_name)
    assert info is not None and info["state"] == "running"
    assert info["vcpus"] == 2
    # The balloon's target is set while paused; the guest gives the memory back after.
    wait_for(
        "the balloon at 1024 MiB",
        lambda: (hv.full_vm_info(vm_name) or {}).get("memory_mib") == 1024,
        timeout=30,
    )
    events = {e["message"]: e for e in t["events"]}
    started = next(e for m, e in events.items() if m.startswith(f"VM {vm_name} started"))
    confirmed = datetime.fromisoformat(t["confirmation"]["at"])
    assert (datetime.fromisoformat(started["at"]) - confirmed).total_seconds() < 2.0
    wait_for(
        "the resume event",
        lambda: any(m.startswith("resumed the pre-booted VM") for m in _messages(run.get(tid))),
        timeout=30,
    )


def test_an_override_past_the_maxima_is_warned_and_restarts_it(
    run: ServiceRun, hv: LibvirtHypervisor, vm_name: str
) -> None:
    tid, t = _paused(run, vm_name)
    rec = t["recommended"]
    assert isinstance(rec, dict)
    chosen = {"vcpus": 2, "memory_mib": 1536, "iops": rec["iops"]}
    review = run.call("POST", f"/transitions/{tid}/override/review", json=chosen).json()
    assert review["needs_restart"] is True, review
    assert any("needs a restart" in w["message"] for w in review["warnings"])
    r = run.call("POST", f"/transitions/{tid}/override", json=chosen)
    assert r.status_code == 200, r.text
    t = run.wait_state(tid, "running", "completed", timeout=90)
    assert any("is started again cold" in m for m in _messages(t))
    info = hv.full_vm_info(vm_name)
    assert info is not None and info["state"] == "running"
    assert (info["memory_mib"], info["max_memory_mib"]) == (1536, 1536)


def test_cancel_of_a_prebooted_vm_leaves_nothing(
    run: ServiceRun, hv: LibvirtHypervisor, vm_name: str
) -> None:
    tid, _t = _paused(run, vm_name)
    r = run.call("POST", f"/transitions/{tid}/cancel")
    assert r.status_code == 200, r.text
    wait_for("the VM removed", lambda: hv.state(vm_name) is None, timeout=60)
    assert not (run.data_dir / "vms" / vm_name).exists()
    disks = run.data_dir / "vm-disks"
    assert not list(disks.glob(f"{vm_name}-*")) if disks.exists() else True
    assert [n for n, m in hv.list_shadows() if m.transition_id == tid] == []
