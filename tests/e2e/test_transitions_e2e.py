"""Transitions end to end on the real local libvirt, through the real service process:
launch and resize from request to completed, kill -9 of the controller in each
state, and cancel, with nothing leaked and never a second VM."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from service_helpers import ServiceRun, cached_accelerator, service

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.shadow.reaper import pid_alive
from vmshadow.store.db import make_engine
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture(scope="module")
def accel(settings: Settings) -> str:
    return cached_accelerator(settings).value


@pytest.fixture
def vm_name(hv: LibvirtHypervisor) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    yield name
    if hv.state(name) is not None:
        hv.remove_full_vm(name)


def shadows_of(hv: LibvirtHypervisor, tid: str) -> list[str]:
    return [n for n, m in hv.list_shadows() if m.transition_id == tid]


def vms_named(hv: LibvirtHypervisor, name: str) -> list[str]:
    return [n for n, _m in hv.list_managed_vms() if n == name]


def create(run: ServiceRun, body: dict[str, object]) -> str:
    r = run.call("POST", "/transitions", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_launch_then_resize_from_request_to_completed(
    settings: Settings, hv: LibvirtHypervisor, accel: str, vm_name: str
) -> None:
    # The launch path without a pre-booted VM (launch.preboot = false): the
    # pending VM is defined and not started until the confirmation. The
    # pre-booted path has its own e2e tests (test_preboot_e2e.py).
    with service(settings, VMSHADOW_ACCELERATOR=accel, VMSHADOW_LAUNCH_PREBOOT="false") as run:
        tid = create(
            run,
            {
                "vm_name": vm_name,
                "profile": "smoke",
                "load": 50,
                "requested": {"vcpus": 2, "memory_mib": 1024},
            },
        )
        t = run.wait_state(tid, "predicted")
        pred = t["prediction"]
        assert pred["method"] == "shadow-measured" and "x1.2" in pred["label"]
        # The pending VM exists before any confirmation, defined but not started,
        # and already carries the recommendation.
        info = hv.full_vm_info(vm_name)
        assert info is not None and not info["running"]
        rec = t["recommended"]
        assert info["memory_mib"] == rec["memory_mib"] and info["vcpus"] == rec["vcpus"]
        assert rec["iops"] and rec["iops"] > 0
        r = run.call("POST", f"/transitions/{tid}/confirm")
        assert r.status_code in (200, 409), r.text  # 409 only if a refinement raced: retry
        if r.status_code == 409:
            r = run.call("POST", f"/transitions/{tid}/confirm")
            assert r.status_code == 200, r.text
        t = run.wait_state(tid, "completed", timeout=240)
        final = t["final"]
        info = hv.full_vm_info(vm_name)
        assert info is not None and info["running"]
        assert (info["vcpus"], info["memory_mib"]) == (final["vcpus"], final["memory_mib"])
        assert shadows_of(hv, tid) == []
        assert vms_named(hv, vm_name) == [vm_name]
        states = [e["state"] for e in t["events"] if e["kind"] == "state"]
        assert states == [
            "requested",
            "shadowing",
            "profiling",
            "predicted",
            "launching",
            "running",
            "completed",
        ]
        store = Store(make_engine(f"sqlite:///{run.data_dir / 'vmshadow.db'}"))
        hist = store.history()
        assert len(hist) == 1 and hist[0].transition_id == tid
        assert hist[0].observed["vcpus"] >= 0 and hist[0].target == final

        # Resize the VM we just launched: the user is told how it will apply.
        rid = create(run, {"kind": "resize", "vm_name": vm_name, "profile": "smoke"})
        t = run.wait_state(rid, "predicted")
        assert t["previous"] == {"vcpus": final["vcpus"], "memory_mib": final["memory_mib"]}
        assert t["prediction"]["resize_mode"] in ("live", "restart")
        target = {"vcpus": 2, "memory_mib": final["memory_mib"], "acknowledge_risk": True}
        review = run.call("POST", f"/transitions/{rid}/override/review", json=target).json()
        assert review["resize_mode"] in ("live", "restart")
        r = run.call("POST", f"/transitions/{rid}/override", json=target)
        assert r.status_code == 200, r.text
        t = run.wait_state(rid, "completed", timeout=240)
        info = hv.full_vm_info(vm_name)
        assert info is not None and info["running"] and info["vcpus"] == 2
        assert any("resized" in e["message"] for e in t["events"])
        assert vms_named(hv, vm_name) == [vm_name]


def test_kill_9_of_the_controller_in_each_state_leaks_nothing(
    settings: Settings, hv: LibvirtHypervisor, accel: str, vm_name: str
) -> None:
    with service(settings, VMSHADOW_ACCELERATOR=accel) as run:
        tid = create(
            run,
            {"vm_name": vm_name, "profile": "smoke", "requested": {"vcpus": 1, "memory_mib": 512}},
        )
        for state in ("shadowing", "profiling", "predicted"):
            run.wait_state(tid, state)
            run.kill9()
            run.start()
            # The restarted controller reaped the dead one's shadow (it may
            # already have booted its own: it takes a dead owner's lease at once).
            t = run.get(tid)
            assert not t["terminal"], t
            dead = [
                n
                for n, m in hv.list_shadows()
                if m.transition_id == tid and not pid_alive(int(m.owner.rpartition(":")[2]))
            ]
            assert dead == [], dead
            assert len(vms_named(hv, vm_name)) <= 1
        run.wait_state(tid, "predicted")
        r = run.call("POST", f"/transitions/{tid}/confirm")
        if r.status_code == 409:
            r = run.call("POST", f"/transitions/{tid}/confirm")
        assert r.status_code == 200, r.text
        run.wait_state(tid, "running", timeout=120)
        run.kill9()
        run.start()
        t = run.wait_state(tid, "completed", timeout=120)
        assert any("restarted" in e["message"] for e in t["events"])
        assert shadows_of(hv, tid) == []
        assert vms_named(hv, vm_name) == [vm_name]
        info = hv.full_vm_info(vm_name)
        assert info is not None and info["running"]


def test_cancel_removes_the_shadow_and_the_pending_vm(
    settings: Settings, hv: LibvirtHypervisor, accel: str, vm_name: str
) -> None:
    with service(settings, VMSHADOW_ACCELERATOR=accel, VMSHADOW_REFINE_ROUNDS="3") as run:
        tid = create(
            run,
            {"vm_name": vm_name, "profile": "smoke", "requested": {"vcpus": 1, "memory_mib": 512}},
        )
        run.wait_state(tid, "profiling")
        assert shadows_of(hv, tid) != []
        assert vms_named(hv, vm_name) == [vm_name]
        r = run.call("POST", f"/transitions/{tid}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        _wait(lambda: shadows_of(hv, tid) == [] and vms_named(hv, vm_name) == [], 60)
        assert not (run.data_dir / "vms" / vm_name).exists()
        runs = run.data_dir / "runs"
        assert not runs.exists() or list(runs.iterdir()) == []


def _wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for cleanup")


def test_fast_launch_chosen_at_request_time(
    settings: Settings, hv: LibvirtHypervisor, accel: str, vm_name: str
) -> None:
    with service(settings, VMSHADOW_ACCELERATOR=accel) as run:
        tid = create(
            run,
            {
                "vm_name": vm_name,
                "profile": "smoke",
                "fast_launch": True,
                "requested": {"vcpus": 1, "memory_mib": 512},
            },
        )
        t = run.wait_state(tid, "running", "completed", timeout=240)
        assert t["decision"] == "fast_launch"
        assert t["final"] == t["recommended"]
        assert shadows_of(hv, tid) == []
        info = hv.full_vm_info(vm_name)
        assert info is not None and info["running"]
