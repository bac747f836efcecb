"""Faults through the real controller and store, on libvirt's test driver: a broken
agent, a cancel while the shadow boots, no disk space for the overlay or the scratch
disk. After each: the state is terminal with a clear reason, and no shadow, disk,
pending VM or extra row is left."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_peer import PeerHypervisor, hello, peer, tiny_image, wait_closed

from vmshadow.config import Settings, load_settings
from vmshadow.controller.engine import Controller
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind
from vmshadow.hypervisor.pool import HostPool, HostRef
from vmshadow.image.builder import input_digest
from vmshadow.shadow.admission import lock_dir
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.fault, pytest.mark.libvirt, pytest.mark.subprocess]


class SharedHypervisor(PeerHypervisor):
    """One test-driver connection for the whole test: test:///default's host
    lives only while some connection to it is open, so the controller must not
    close and reopen it (and what one test leaves there, the next may see)."""

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        self.close_connection()


@dataclass
class World:
    settings: Settings
    hv: SharedHypervisor
    store: Store
    service: TransitionService
    controller: Controller

    def create(self, name: str = "app1") -> str:
        row = self.service.create(
            NewTransition(
                kind=TransitionKind.LAUNCH,
                vm_name=name,
                profile="smoke",
                requested=Allocation(1, 512),
            )
        )
        self.controller.wake.set()
        return row.id

    def wait(self, what: str, check: Callable[[], object], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        tids = [r.id for r in self.store.list_transitions(limit=10)]
        events = [e.message for t in tids for e in self.store.events(t)]
        raise AssertionError(f"timed out waiting for {what}; events: {events}")

    def state(self, tid: str) -> str:
        return str(self.store.get(tid).state)

    def assert_clean(self, tid: str, vm_name: str = "app1") -> None:
        assert [n for n, m in self.hv.list_shadows() if m.transition_id == tid] == []
        self.wait("the pending VM to be removed", lambda: self.hv.full_vm_info(vm_name) is None)
        runs = self.settings.runs_dir
        assert not runs.exists() or list(runs.iterdir()) == []
        assert [r.id for r in self.store.list_transitions(limit=10)] == [tid]
        # Nor a shadow-slot reservation: a failed boot's held the host's slot
        # for RESERVE_S (30 s), so the next shadow waited that long.
        mine = [
            f
            for f in lock_dir(runs).glob("shadows-*.reserved.*")
            if f.read_text().split()[0] == str(os.getpid())
        ]
        assert mine == []


@pytest.fixture(scope="module")
def digest() -> str:
    return input_digest()[0]  # seconds of hashing: once per module


@contextlib.contextmanager
def make_world(tmp_path: Path, sock: Path, digest: str, **shadow: object) -> Iterator[World]:
    images = tmp_path / "images"
    tiny_image(images / digest)
    settings = load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("images_dir",): str(images),
            ("libvirt_uri",): "test:///default",
            ("accelerator",): "tcg",
            ("controller", "poll_s"): 0.2,
            ("controller", "phase_s"): 2,
            **{("shadow", k): v for k, v in shadow.items()},
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )
    hv = SharedHypervisor("test:///default", sock)
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    pool = HostPool([HostRef("local", "test:///default")], connect=lambda _uri: hv)
    controller = Controller(settings, store, pool=pool)
    service = TransitionService(settings, store, pool=pool, on_change=controller.wake.set)
    controller.start()
    try:
        yield World(settings, hv, store, service, controller)
    finally:
        controller.stop(timeout=30)
        # test:///default keeps one host per process while any connection to it
        # is open (other tests' services hold some): leave nothing on it, or the
        # next world finds this one's VM name taken.
        for name, _meta in hv.list_managed_vms():
            hv.remove_full_vm(name)
        for name, _meta in hv.list_shadows():
            hv.destroy(name)
        hv.really_close()
        engine.dispose()


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "agent.sock"


def test_an_agent_sending_garbage_fails_the_transition_cleanly(
    tmp_path: Path, sock: Path, digest: str
) -> None:
    def garbage(conn: object) -> None:
        conn.sendall(b"garbage\n")  # type: ignore[attr-defined]

    with peer(sock, garbage), make_world(tmp_path, sock, digest, hello_timeout_s=20) as world:
        tid = world.create()
        world.wait("failed", lambda: world.state(tid) == "failed")
        reason = str(world.store.get(tid).reason)
        assert "did not reach its agent" in reason and "malformed_json" in reason
        world.assert_clean(tid)


def test_cancel_while_the_shadow_boots_stops_waiting_for_the_agent(
    tmp_path: Path, sock: Path, digest: str
) -> None:
    with (
        peer(sock, wait_closed),
        make_world(tmp_path, sock, digest, hello_timeout_s=120) as world,
    ):  # never says hello; the host hangs up when cancelled
        tid = world.create()
        world.wait(
            "the shadow to be booting",
            lambda: any(m.transition_id == tid for _n, m in world.hv.list_shadows()),
        )
        assert world.state(tid) == "shadowing"
        cancelled_at = time.monotonic()
        world.service.cancel(tid)
        # Gone within seconds, not after the two-minute hello timeout.
        world.wait(
            "the shadow to go",
            lambda: not any(m.transition_id == tid for _n, m in world.hv.list_shadows()),
            timeout=15,
        )
        assert time.monotonic() - cancelled_at < 15
        row = world.store.get(tid)
        assert row.state == "cancelled" and row.reason == "cancelled"
        world.assert_clean(tid)


@pytest.fixture
def tiny_runs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The runs folder on a tmpfs of the size the test asks for."""
    runs = tmp_path / "data" / "runs"
    runs.mkdir(parents=True)
    size = request.param
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(runs)],
                   check=True)  # fmt: skip
    try:
        yield runs
    finally:
        subprocess.run(["umount", str(runs)], check=True)


@pytest.mark.parametrize(
    ("tiny_runs", "what"),
    [("16k", "qemu-img create failed"), ("2m", "cannot allocate 1024 MiB scratch disk")],
    ids=["no-room-for-the-overlay", "no-room-for-the-scratch-disk"],
    indirect=["tiny_runs"],
)
def test_no_disk_space_fails_the_transition_cleanly(
    tmp_path: Path, sock: Path, digest: str, tiny_runs: Path, what: str
) -> None:
    with (
        peer(sock, lambda conn: conn.sendall(hello())),
        make_world(tmp_path, sock, digest) as world,
    ):
        assert world.settings.runs_dir == tiny_runs
        tid = world.create()
        world.wait("failed", lambda: world.state(tid) == "failed")
        reason = str(world.store.get(tid).reason)
        assert what in reason and "No space left on device" in reason, reason
        world.assert_clean(tid)
        assert list(tiny_runs.iterdir()) == []  # the half-made run folder is gone too


def test_the_controller_boots_the_shadow_size_the_settings_ask_for(
    tmp_path: Path, sock: Path, digest: str
) -> None:
    # Its ramp checks saturation against shadow.vcpus: a shadow booted at the
    # default size instead would never look saturated and ramp on to the end.
    with (
        peer(sock, wait_closed),
        make_world(tmp_path, sock, digest, hello_timeout_s=120, vcpus=2, memory_mib=768) as world,
    ):
        tid = world.create()
        world.wait(
            "the shadow to be booting",
            lambda: any(m.transition_id == tid for _n, m in world.hv.list_shadows()),
        )
        name = next(n for n, m in world.hv.list_shadows() if m.transition_id == tid)
        xml = ET.fromstring(world.hv._lookup(name).XMLDesc(0))
        assert xml.findtext("vcpu") == "2"
        assert int(xml.findtext("memory") or 0) == 768 * 1024  # KiB
        world.service.cancel(tid)
        world.wait("cancelled", lambda: world.state(tid) == "cancelled")
