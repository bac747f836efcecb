"""The pending VM pre-booted while the decision is awaited, on libvirt's test driver.

The test driver runs no guest, so "guest ready" cannot be asked: the watch
pauses the pre-booted VM at its first look (real guests: tests/e2e/test_preboot_e2e.py).
It does run the libvirt side for real: the domain's maxima, pause, the live
size applied while paused, resume, and removal. The test driver refuses any
IOPS cap change, so the decided sizes keep the recommendation's IOPS.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet_harness import AgentTestHost, fleet_settings, write_host_xml
from vmshadow.config import Settings
from vmshadow.controller.engine import Controller
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.hypervisor.pool import HostPool, pool_from_settings
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState
REQUESTED = Allocation(2, 1024)


def _settings(tmp_path: Path, *, preboot: bool = True) -> Settings:
    uri = write_host_xml(tmp_path / "h.xml", cpus=4, memory_mib=8192, cpu_model="m1")
    s = fleet_settings(tmp_path, [{"name": "h", "uri": uri}], f"sqlite:///{tmp_path / 'v.db'}")
    s.launch.preboot = preboot
    return s


@contextlib.contextmanager
def _service(
    settings: Settings,
) -> Iterator[tuple[TransitionService, HostPool, Callable[[], Controller]]]:
    """The store, the pool (whose connection holds the test host) and a way
    to start controllers over them: a second one after a first is stopped is a restart."""
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    pool = pool_from_settings(settings, connect=AgentTestHost)
    started: list[Controller] = []

    def controller() -> Controller:
        c = Controller(settings, store, pool=pool)
        c.start()
        started.append(c)
        return c

    svc = TransitionService(
        settings, store, pool=pool, on_change=lambda: [c.wake.set() for c in started]
    )
    try:
        yield svc, pool, controller
    finally:
        for c in started:
            c.stop()
        for name, _meta in pool.connect("h").list_managed_vms():
            pool.connect("h").remove_full_vm(name)
        pool.close()
        engine.dispose()


def _until(what: Callable[[], object], why: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


def _messages(svc: TransitionService, tid: str) -> list[str]:
    return [e.message for e in svc.store.events(tid)]


def _paused_after_prediction(svc: TransitionService, name: str) -> str:
    tid = svc.create(NewTransition(TransitionKind.LAUNCH, name, "smoke", REQUESTED)).id
    _until(lambda: svc.store.get(tid).state == S.PREDICTED.value, "never predicted")
    _until(
        lambda: any("pre-booted and paused" in m for m in _messages(svc, tid)),
        f"never paused: {_messages(svc, tid)}",
    )
    return tid


def test_preboot_at_recommendation_then_confirm_resumes_it_live(tmp_path: Path) -> None:
    with _service(_settings(tmp_path)) as (svc, pool, controller):
        controller()
        tid = _paused_after_prediction(svc, "pb1")
        hv = pool.connect("h")
        pred = svc.store.latest_prediction(tid)
        assert pred is not None
        info = hv.full_vm_info("pb1")
        assert info is not None and info["state"] == "paused"
        assert (info["vcpus"], info["memory_mib"]) == (pred.rec_vcpus, pred.rec_memory_mib)
        assert info["max_memory_mib"] == max(REQUESTED.memory_mib, pred.rec_memory_mib)
        doc = svc.view(svc.store.get(tid), with_events=True)
        assert doc["preboot"]["state"] == "paused"
        # Within the maxima: no restart warned.
        chosen = Allocation(2, 1024, pred.rec_iops)
        review = svc.review_override(tid, chosen)
        assert review["needs_restart"] is False
        svc.override(tid, chosen, acknowledge_risk=True)
        _until(lambda: svc.store.get(tid).state == S.RUNNING.value, "never running")
        info = hv.full_vm_info("pb1")
        assert info is not None and info["state"] == "running"
        assert (info["vcpus"], info["memory_mib"]) == (2, 1024)
        _until(
            lambda: any(m.startswith("resumed the pre-booted VM") for m in _messages(svc, tid)),
            f"no resume event: {_messages(svc, tid)}",
        )
        assert svc.store.get(tid).vm_started


def test_override_past_the_maxima_is_warned_and_restarts_cold(tmp_path: Path) -> None:
    with _service(_settings(tmp_path)) as (svc, pool, controller):
        controller()
        tid = _paused_after_prediction(svc, "pb2")
        pred = svc.store.latest_prediction(tid)
        assert pred is not None
        # Past the maxima (max(requested, recommended)) whatever was measured:
        # the agent runs as a host process here and measures the host's memory,
        # so a busy host recommended 2048 MiB and a fixed 2048 was not past it.
        booted_max = max(REQUESTED.memory_mib, pred.rec_memory_mib)
        chosen = Allocation(2, booted_max + 1024, pred.rec_iops)
        review = svc.review_override(tid, chosen)
        assert review["needs_restart"] is True
        restart = [w for w in review["warnings"] if w["severity"] == "needs-restart"]
        assert restart and "needs a restart" in restart[0]["message"]
        svc.override(tid, chosen, acknowledge_risk=True)
        _until(lambda: svc.store.get(tid).state == S.RUNNING.value, "never running")
        assert any("is started again cold" in m for m in _messages(svc, tid))
        info = pool.connect("h").full_vm_info("pb2")
        assert info is not None and info["state"] == "running"
        assert info["memory_mib"] == info["max_memory_mib"] == chosen.memory_mib


def test_cancel_of_a_prebooted_vm_leaves_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with _service(settings) as (svc, pool, controller):
        controller()
        tid = _paused_after_prediction(svc, "pb3")
        svc.cancel(tid)
        _until(lambda: pool.connect("h").full_vm_info("pb3") is None, "VM left behind")
        _until(lambda: not svc.store.get(tid).vm_defined, "still booked as defined")
        assert not (settings.vms_dir / "pb3").exists()
        left = list(settings.vm_disks_dir.glob("pb3-*")) if settings.vm_disks_dir.exists() else []
        assert left == []


def test_preboot_off_keeps_the_pending_vm_shut_off_until_confirm(tmp_path: Path) -> None:
    with _service(_settings(tmp_path, preboot=False)) as (svc, pool, controller):
        controller()
        tid = svc.create(NewTransition(TransitionKind.LAUNCH, "pb4", "smoke", REQUESTED)).id
        _until(lambda: svc.store.get(tid).state == S.PREDICTED.value, "never predicted")
        time.sleep(1.5)  # longer than a watch takes to pause a pre-booted VM here
        info = pool.connect("h").full_vm_info("pb4")
        assert info is not None and info["running"] is False
        assert svc.view(svc.store.get(tid), with_events=True)["preboot"]["state"] == "off"
        svc.confirm(tid)
        _until(lambda: svc.store.get(tid).state == S.RUNNING.value, "never running")
        assert not any("pre-boot" in m for m in _messages(svc, tid))


def test_a_restarted_controller_pauses_or_preboots_what_it_finds(tmp_path: Path) -> None:
    with _service(_settings(tmp_path)) as (svc, pool, controller):
        first = controller()
        running = _paused_after_prediction(svc, "pb5")
        off = _paused_after_prediction(svc, "pb6")
        first.stop()
        hv = pool.connect("h")
        # As a crash leaves them: one pre-booted but never paused, one never pre-booted.
        hv.resume_full_vm("pb5")
        hv.power_off_full_vm("pb6")
        controller()
        _until(lambda: (hv.full_vm_info("pb5") or {}).get("state") == "paused", "pb5 not paused")
        _until(lambda: (hv.full_vm_info("pb6") or {}).get("state") == "paused", "pb6 not paused")
        assert any(
            m.startswith("controller restarted: pre-booted") for m in _messages(svc, running)
        )
        assert sum("pre-booting at" in m for m in _messages(svc, off)) == 2
        svc.confirm(running)
        _until(lambda: svc.store.get(running).state == S.RUNNING.value, "never running")
        assert (hv.full_vm_info("pb5") or {}).get("state") == "running"
