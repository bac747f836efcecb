"""Three controller processes on one PostgreSQL, one killed with SIGKILL while it
drives transitions: every transition still completes, each step exactly once,
and every VM is started exactly once.

The processes share ``test+unix:///default`` (the test driver inside the
system's libvirtd), so each sees the domains the others made; the shadows'
agents run as host processes (see ``fleet_harness``).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_harness import SHARED_TEST_HOST, ControllerProcesses
from vmshadow.config import load_settings
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState
STEPS = ["requested", "shadowing", "profiling", "predicted", "launching", "running", "completed"]


@pytest.fixture
def service(tmp_path: Path, pg_url: str) -> Iterator[TransitionService]:
    engine = make_engine(pg_url)
    migrate(engine)
    settings = load_settings(
        {("data_dir",): str(tmp_path / "api"), ("database_url",): pg_url},
        config_path=Path("/nonexistent"),
        environ={"VMSHADOW_HOSTS": f"shared={SHARED_TEST_HOST}"},
    )
    pool = pool_from_settings(settings)
    svc = TransitionService(settings, Store(engine), pool=pool)
    names: list[str] = []
    svc.names = names  # type: ignore[attr-defined]
    try:
        yield svc
    finally:
        hv = pool.connect()
        for name, _meta in hv.list_managed_vms():
            if name in names:
                hv.remove_full_vm(name)
        for name, meta in hv.list_shadows():
            if meta.run_dir.startswith(str(tmp_path)):
                hv.destroy(name)
        pool.close()
        engine.dispose()


def test_a_controller_killed_mid_run_loses_and_doubles_nothing(
    tmp_path: Path, pg_url: str, service: TransitionService
) -> None:
    store = service.store
    tag = uuid.uuid4().hex[:6]
    names = [f"fo-{tag}-{i}" for i in range(6)]
    service.names.extend(names)  # type: ignore[attr-defined]
    controllers = ControllerProcesses(
        tmp_path,
        pg_url,
        3,
        PHASE_S="2",
        REFINE_ROUNDS="0",
        OBSERVE_S="3",
        POLL_S="0.3",
        LEASE_S="5",
        MAX_SHADOWS="3",
    )
    try:
        tids = [
            service.create(NewTransition(TransitionKind.LAUNCH, n, "smoke", Allocation(1, 128))).id
            for n in names
        ]
        victim: int | None = None
        taken_from: str | None = None
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            rows = [store.get(t) for t in tids]
            if victim is None:
                # Kill the controller driving a transition mid-profiling.
                for r in rows:
                    if r.state == S.PROFILING.value and r.lease_owner:
                        victim = controllers.kill9(int(r.lease_owner.split(":")[1]))
                        taken_from = r.id
                        break
            for r in rows:  # the user decides (the "guest" measured is this host)
                if r.state == S.PREDICTED.value:
                    try:
                        service.override(r.id, Allocation(1, 128), acknowledge_risk=True)
                    except Exception:
                        continue
            if all(r.state == S.COMPLETED.value for r in rows):
                break
            failed = [(r.id, r.state, r.reason) for r in rows if TransitionState(r.state).terminal]
            assert all(st == S.COMPLETED.value for _i, st, _r in failed), (
                failed,
                controllers.tails(),
            )
            time.sleep(0.3)
        else:
            pytest.fail(
                f"not all completed: {[store.get(t).state for t in tids]}\n{controllers.tails()}"
            )
        assert victim is not None and taken_from is not None, "no controller was killed mid-run"

        for tid in tids:
            events = store.events(tid)
            states = Counter(e.state for e in events if e.kind == "state")
            assert states == Counter(STEPS), (tid, states)  # each step exactly once
            started = [e for e in events if e.message.startswith("VM ") and " started" in e.message]
            assert len(started) == 1, [e.message for e in events]
        taken = [e.message for e in store.events(taken_from)]
        assert "controller restarted: profiling again" in taken
        assert len(store.history()) == len(tids)  # one history record each

        hv = service.pool.connect()
        managed = [n for n, _m in hv.list_managed_vms() if n in names]
        assert sorted(managed) == sorted(names)  # each VM defined once, none lost
        assert all(hv.is_running(n) for n in names)
        time.sleep(2)  # a sweep pass after the last completion
        assert [n for n, m in hv.list_shadows() if m.transition_id in tids] == []
    finally:
        controllers.stop()
