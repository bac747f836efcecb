"""The store on a real PostgreSQL server: migrations, compare-and-set, claiming
work with SKIP LOCKED, lease takeover, and placement under the advisory lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, update

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError
from vmshadow.domain.placement import HostCapacity, NoRoom, bookings, capacities, place_shadow
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.transition import Decision, TransitionKind, TransitionState
from vmshadow.store import fleet
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.models import Base, TransitionRow
from vmshadow.store.repository import Store, now

pytestmark = pytest.mark.subprocess
S = TransitionState


_engines: list[Engine] = []


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    engine = make_engine(pg_url)
    migrate(engine)
    yield Store(engine)
    for e in [engine, *_engines]:
        e.dispose()
    _engines.clear()


def other(store: Store) -> Store:
    """A second controller: its own engine and connections on the same database."""
    engine = make_engine(store.engine.url.render_as_string(hide_password=False))
    _engines.append(engine)
    return Store(engine)


def new(store: Store, name: str) -> str:
    return store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name=name, profile="smoke", requested=Allocation(1, 512)
    ).id


def test_migrations_match_the_models_and_may_run_at_once(pg_url: str) -> None:
    engines = [make_engine(pg_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(e: object) -> None:
        try:
            migrate(e)  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engines[0].connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    for e in engines:
        e.dispose()


def test_postgresql_url_gets_the_psycopg_driver(pg_url: str) -> None:
    engine = make_engine(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_two_confirms_from_two_controllers_launch_once(store: Store) -> None:
    tid = new(store, "web1")
    for st in (S.SHADOWING, S.PROFILING):
        store.advance(tid, st, st.value)
    pid = store.add_prediction(
        tid, Prediction("m", "l", 0, 1.2, Requirement(1, 300, 10), Allocation(1, 512))
    )
    store.advance(tid, S.PREDICTED, "predicted")
    stores = [store, other(store), other(store), other(store)]
    barrier = threading.Barrier(len(stores))
    outcome: list[str] = []

    def confirm(st: Store) -> None:
        barrier.wait()
        try:
            st.confirm(
                tid,
                decision=Decision.PREDICTION,
                allocation=Allocation(1, 512),
                prediction_id=pid,
                warnings=[],
                risk_acknowledged=False,
            )
            outcome.append("won")
        except ConflictError:
            outcome.append("lost")

    threads = [threading.Thread(target=confirm, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome) == ["lost", "lost", "lost", "won"]
    states = [e.state for e in store.events(tid) if e.kind == "state"]
    assert states.count(S.LAUNCHING.value) == 1


def test_claim_skips_rows_another_controller_is_claiming(store: Store) -> None:
    ids = [new(store, f"vm{i}") for i in range(4)]
    b = other(store)
    # Controller B is mid-claim on the first two rows (its row locks are held)...
    with b.session() as s, s.begin():
        locked = list(
            s.scalars(
                select(TransitionRow.id).where(TransitionRow.id.in_(ids[:2])).with_for_update()
            )
        )
        assert sorted(locked) == sorted(ids[:2])
        # ...so A takes the other two at once instead of waiting on B.
        t0 = time.monotonic()
        assert sorted(fleet.claim(store, ids, "A", 30)) == sorted(ids[2:])
        assert time.monotonic() - t0 < 5
    assert sorted(fleet.claim(b, ids, "B", 30)) == sorted(ids[:2])
    # Nothing is leased twice; A's claims stay A's.
    assert fleet.claim(b, ids, "B", 30) == sorted(ids[:2], key=ids.index)
    assert fleet.claim(store, ids[:2], "A", 30) == []


def test_many_controllers_claiming_at_once_split_the_work(store: Store) -> None:
    ids = [new(store, f"vm{i}") for i in range(40)]
    stores = [other(store) for _ in range(4)]
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(stores))

    def run(n: int, st: Store) -> None:
        barrier.wait()
        mine: list[str] = []
        for tid in ids:  # one at a time, as a controller's tick would
            mine += fleet.claim(st, [tid], f"C{n}", 30)
        got[f"C{n}"] = mine

    threads = [threading.Thread(target=run, args=(n, st)) for n, st in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [tid for mine in got.values() for tid in mine]
    assert sorted(claimed) == sorted(ids)  # each exactly once
    with store.session() as s:
        owners = dict(s.execute(select(TransitionRow.id, TransitionRow.lease_owner)).all())
    assert all(owners[tid] == o for o, mine in got.items() for tid in mine)


def test_an_expired_lease_is_taken_over_and_the_old_owner_stops(store: Store) -> None:
    tid = new(store, "web1")
    assert fleet.claim(store, [tid], "dead", 30) == [tid]
    assert fleet.claim(store, [tid], "B", 30) == []
    with store.session() as s, s.begin():  # time passes: the lease runs out
        s.execute(
            update(TransitionRow)
            .where(TransitionRow.id == tid)
            .values(lease_until=now() - timedelta(seconds=1))
        )
    assert fleet.claim(store, [tid], "B", 30) == [tid]
    assert fleet.hold(store, tid, "dead", 30) is False  # it must stop driving
    assert fleet.hold(store, tid, "B", 30) is True


def test_placement_never_overbooks_a_host_across_controllers(store: Store) -> None:
    """Eight controllers place eight shadows at once on a host with room for three."""
    host = HostCapacity("a", cpus=3, memory_mib=8192, cpu_model="m")
    ids = [new(store, f"vm{i}") for i in range(8)]
    stores = [other(store) for _ in ids]
    for tid, st in zip(ids, stores, strict=True):
        assert fleet.claim(st, [tid], f"owner-{tid}", 30) == [tid]
    barrier = threading.Barrier(len(ids))
    placed: list[str] = []

    def run(tid: str, st: Store) -> None:
        def decide(row: TransitionRow, held: list[fleet.Holding]) -> fleet.Change | None:
            caps = capacities([host], bookings(held, {}, Allocation(1, 512)), exclude=row.id)
            # A slow decision widens the window a lock-free version would lose in.
            time.sleep(0.05)
            choice = place_shadow(caps, Allocation(1, 512), max_shadows=8)
            if isinstance(choice, NoRoom):
                return None
            return fleet.Change(
                "shadowing",
                {"shadow_host": choice.host, "shadow_live": True},
                to=S.SHADOWING,
            )

        barrier.wait()
        if fleet.place(st, tid, f"owner-{tid}", decide) is not None:
            placed.append(tid)

    threads = [threading.Thread(target=run, args=a) for a in zip(ids, stores, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(placed) == 3  # exactly the room there was, never more
    held = fleet.holdings(store)
    caps = capacities([host], bookings(held, {}, Allocation(1, 512)))
    assert (caps[0].booked_vcpus, caps[0].shadows) == (3, 3)
    assert {store.get(t).state for t in placed} == {S.SHADOWING.value}


def test_placement_writes_nothing_without_the_lease(store: Store) -> None:
    tid = new(store, "web1")
    assert fleet.claim(store, [tid], "A", 30) == [tid]

    def decide(_row: TransitionRow, _held: list[fleet.Holding]) -> fleet.Change:
        return fleet.Change("x", {"vm_host": "a"})

    assert fleet.place(store, tid, "B", decide) is None
    assert store.get(tid).vm_host is None
    assert fleet.place(store, tid, "A", decide) is not None
    assert store.get(tid).vm_host == "a"
