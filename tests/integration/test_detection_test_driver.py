"""Requests written into libvirt domains, on libvirt's test driver: found by the
controller's sweep, one transition each, sized in place, put back on removal.

Domains are defined through the pool's own connection: a test-driver host's
state lives in that connection (domain events from a second connection would
not see it, so these tests exercise the sweep; tests/e2e/test_detection_e2e.py
the events on real QEMU). The test driver refuses IOPS caps, so these domains
have no disk.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from fleet_harness import AgentTestHost, fleet_settings, write_host_xml
from vmshadow.config import Settings
from vmshadow.controller.detection import ORIGIN
from vmshadow.controller.engine import Controller
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.hypervisor.pool import HostPool, pool_from_settings
from vmshadow.hypervisor.requestxml import REQUEST_NS, STATUS_NS, parse_status
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState


def _settings(tmp_path: Path) -> Settings:
    uri = write_host_xml(tmp_path / "h.xml", cpus=4, memory_mib=8192, cpu_model="m1")
    s = fleet_settings(tmp_path, [{"name": "h", "uri": uri}], f"sqlite:///{tmp_path / 'v.db'}")
    s.launch.preboot = False
    s.controller.detect_interval_s = 1.0
    s.controller.detect_events = False  # the test host's state is this connection's alone
    return s


def domain_xml(name: str, request: str | None, *, vcpus: int = 2, memory_mib: int = 1024) -> str:
    meta = f"<metadata>{request}</metadata>" if request else ""
    return (
        f"<domain type='test'><name>{name}</name>{meta}"
        f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )


def request(**attrs: str) -> str:
    body = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f'<vmshadow:request xmlns:vmshadow="{REQUEST_NS}" {body}/>'


@contextlib.contextmanager
def _world(settings: Settings) -> Iterator[tuple[Store, HostPool, Callable[[], Controller]]]:
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

    try:
        yield store, pool, controller
    finally:
        for c in started:
            c.stop()
        pool.close()
        engine.dispose()


def conn(pool: HostPool) -> Any:
    return pool.connect("h")._conn


def _until(what: Callable[[], object], why: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


def adopted(store: Store, name: str) -> list[Any]:
    return [r for r in store.list_transitions(name=name) if r.origin == ORIGIN]


def size(pool: HostPool, name: str) -> tuple[int, int, int, int]:
    dom = conn(pool).lookupByName(name)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return (
        dom.vcpusFlags(flags),
        dom.vcpusFlags(flags | libvirt.VIR_DOMAIN_VCPU_MAXIMUM),
        dom.info()[2] // 1024,
        dom.maxMemory() // 1024,
    )


def test_request_becomes_one_transition_and_is_launched_within_policy(tmp_path: Path) -> None:
    with _world(_settings(tmp_path)) as (store, pool, controller):
        untouched = domain_xml("plain", None)
        conn(pool).defineXML(untouched)
        before = conn(pool).lookupByName("plain").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        conn(pool).defineXML(
            domain_xml("asked", request(profile="smoke", policy="auto-within:1000"))
        )
        c = controller()
        _until(lambda: adopted(store, "asked"), "the request never became a transition")
        _until(
            lambda: adopted(store, "asked")[0].state == S.RUNNING.value,
            f"never running: {[e.message for e in store.events(adopted(store, 'asked')[0].id)]}",
        )
        row = adopted(store, "asked")[0]
        assert row.kind == TransitionKind.LAUNCH.value and row.policy == "auto-within:1000"
        messages = [e.message for e in store.events(row.id)]
        assert any("confirmed automatically by policy auto-within:1000" in m for m in messages)
        dom = conn(pool).lookupByName("asked")
        assert dom.isActive()
        pred = store.latest_prediction(row.id)
        assert pred is not None
        vcpus, max_vcpus, mem, max_mem = size(pool, "asked")
        assert (vcpus, mem) == (pred.rec_vcpus, pred.rec_memory_mib)
        assert (max_vcpus, max_mem) == (pred.rec_vcpus, pred.rec_memory_mib)
        status = parse_status(dom.XMLDesc(0))
        assert status is not None and status.transition == row.id
        # More sweeps: still one transition for the domain.
        c.detector._swept_at = -float("inf")  # type: ignore[union-attr]
        c.wake.set()
        time.sleep(2.5)
        assert len(adopted(store, "asked")) == 1
        # The domain without the element was never touched.
        after = conn(pool).lookupByName("plain").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert after == before
        assert adopted(store, "plain") == []
        # Once observed, the request is done: removed, the status stays.
        _until(lambda: store.get(row.id).state == S.COMPLETED.value, "never completed")
        _until(lambda: not store.get(row.id).vm_defined, "never released")
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert REQUEST_NS not in xml and STATUS_NS in xml
        assert len(adopted(store, "asked")) == 1
        dom.destroy()
        dom.undefine()
        conn(pool).lookupByName("plain").undefine()


def test_removing_the_request_cancels_and_restores_the_size(tmp_path: Path) -> None:
    with _world(_settings(tmp_path)) as (store, pool, controller):
        # A policy that never confirms on its own: the removal comes first.
        xml = domain_xml(
            "undo", request(profile="smoke", policy="manual"), vcpus=3, memory_mib=1536
        )
        conn(pool).defineXML(xml)
        original = size(pool, "undo")
        controller()
        _until(
            lambda: adopted(store, "undo") and adopted(store, "undo")[0].state == S.PREDICTED.value,
            "never predicted",
        )
        row = adopted(store, "undo")[0]
        pred = store.latest_prediction(row.id)
        assert pred is not None
        resized = size(pool, "undo")
        assert resized[0] == pred.rec_vcpus and resized[2] == pred.rec_memory_mib
        dom = conn(pool).lookupByName("undo")
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            None,
            None,
            REQUEST_NS,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        )
        _until(lambda: store.get(row.id).state == S.CANCELLED.value, "never cancelled")
        _until(lambda: not store.get(row.id).vm_defined, "never released")
        assert size(pool, "undo") == original
        assert not dom.isActive()
        status = parse_status(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert status is not None and status.state == "cancelled"
        assert "removed" in (store.get(row.id).reason or "")
        dom.undefine()


def test_a_domain_defined_while_no_controller_ran_is_taken_at_start(tmp_path: Path) -> None:
    with _world(_settings(tmp_path)) as (store, pool, controller):
        first = controller()
        first.stop()
        conn(pool).defineXML(domain_xml("later", request(profile="smoke")))
        time.sleep(0.5)
        assert adopted(store, "later") == []
        controller()
        _until(lambda: adopted(store, "later"), "not taken at start")
        row = adopted(store, "later")[0]
        assert row.policy == "manual"
        for c in [first]:
            assert c.ctx is not None
        store.advance(row.id, S.CANCELLED, "cancelled by the test", reason="test")
        _until(lambda: not store.get(row.id).vm_defined, "never released")
        conn(pool).lookupByName("later").undefine()


def test_an_invalid_request_fails_naming_the_attribute(tmp_path: Path) -> None:
    with _world(_settings(tmp_path)) as (store, pool, controller):
        conn(pool).defineXML(domain_xml("bad", request(profile="smoke", policy="auto-within:x")))
        controller()
        _until(lambda: adopted(store, "bad"), "no transition recorded the refusal")
        row = adopted(store, "bad")[0]
        _until(lambda: not store.get(row.id).vm_defined, "never released")
        row = store.get(row.id)
        assert row.state == S.FAILED.value
        assert "policy" in (row.reason or "") and "'x'" in (row.reason or "")
        dom = conn(pool).lookupByName("bad")
        status = parse_status(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert status is not None and status.state == "failed" and "policy" in status.note
        assert REQUEST_NS not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        time.sleep(1.5)
        assert len(adopted(store, "bad")) == 1
        dom.undefine()
