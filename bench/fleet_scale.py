"""Transitions per second with 1, 2 and 4 controller processes on PostgreSQL.

Starts its own PostgreSQL server (Debian's, durable defaults, on 127.0.0.1)
and, for each controller count, a fresh database and that many controller
processes on libvirt's test driver inside the system libvirtd
(``test+unix:///default``, shared by all processes). Each transition is the
real path: placement, a shadow whose agent runs the smoke profile as a host
process (the test driver has no guest), a prediction, the user's decision
(an override, made by this script as soon as the prediction exists), the
pending VM started, observation, history. The host has a fixed number of
shadow slots (``--slots``), the same for every run, so the figure shows what
several controllers cost or gain against one driving the same slots.

    .venv/bin/python bench/fleet_scale.py [--transitions 12] [--slots 4]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fleet_harness import SHARED_TEST_HOST, ControllerProcesses
from pgserver import pg_server
from vmshadow.config import load_settings
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

S = TransitionState
VM = Allocation(1, 128)


def run(workdir: Path, db_url: str, controllers: int, transitions: int, slots: int) -> float:
    """Seconds from the first request to the last completed transition."""
    engine = make_engine(db_url)
    migrate(engine)
    settings = load_settings(
        {("data_dir",): str(workdir / "api"), ("database_url",): db_url},
        config_path=Path("/nonexistent"),
        environ={"VMSHADOW_HOSTS": f"shared={SHARED_TEST_HOST}"},
    )
    pool = pool_from_settings(settings)
    svc = TransitionService(settings, Store(engine), pool=pool)
    procs = ControllerProcesses(
        workdir,
        db_url,
        controllers,
        PHASE_S="2",
        REFINE_ROUNDS="0",
        OBSERVE_S="1",
        POLL_S="0.2",
        LEASE_S="10",
        MAX_SHADOWS=str(slots),
        SHADOW_MEMORY_MIB="256",
    )
    names = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(transitions)]
    try:
        t0 = time.monotonic()
        tids = [svc.create(NewTransition(TransitionKind.LAUNCH, n, "smoke", VM)).id for n in names]
        while True:
            rows = [svc.store.get(t) for t in tids]
            for r in rows:
                if r.state == S.PREDICTED.value:
                    with contextlib.suppress(ConflictError):  # decided a moment ago
                        svc.override(r.id, VM, acknowledge_risk=True)
            bad = [(r.id, r.state, r.reason) for r in rows if r.state in ("failed", "cancelled")]
            if bad:
                raise SystemExit(f"transitions ended badly: {bad}\n{procs.tails()}")
            if all(r.state == S.COMPLETED.value for r in rows):
                return time.monotonic() - t0
            if time.monotonic() - t0 > 1200:
                raise SystemExit(f"timed out: {[r.state for r in rows]}\n{procs.tails()}")
            time.sleep(0.1)
    finally:
        procs.stop()
        hv = pool.connect()
        for name, _meta in hv.list_managed_vms():
            if name in names:
                hv.remove_full_vm(name)
        pool.close()
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--transitions", type=int, default=12)
    ap.add_argument("--slots", type=int, default=4, help="shadow slots of the host")
    ap.add_argument("--controllers", default="1,2,4")
    args = ap.parse_args()
    counts = [int(c) for c in args.controllers.split(",")]
    results: dict[int, float] = {}
    with pg_server(durable=True) as pg, tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            workdir = Path(tmp) / f"c{n}"
            workdir.mkdir()
            secs = run(workdir, pg.create_database(), n, args.transitions, args.slots)
            results[n] = args.transitions / secs
            print(
                f"  {n} controller(s): {args.transitions} transitions in {secs:.1f} s", flush=True
            )
    base = results[counts[0]]
    print(
        f"\ntransitions/s on PostgreSQL, test driver, {args.transitions} transitions, "
        f"{args.slots} shadow slots, smoke profile at 2 s per phase"
    )
    print(f"{'controllers':>11}  {'transitions/s':>13}  {'vs 1 controller':>15}")
    for n in counts:
        print(f"{n:>11}  {results[n]:>13.3f}  {results[n] / base:>14.2f}x")


if __name__ == "__main__":
    main()
