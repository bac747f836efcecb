"""The store: migrations match the models, compare-and-set is race-free."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError, NotFoundError
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.transition import Decision, IllegalTransition, TransitionKind, TransitionState
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.models import Base
from vmshadow.store.repository import Store

S = TransitionState


def new(store: Store, name: str = "web1") -> str:
    return store.create_transition(
        kind=TransitionKind.LAUNCH,
        vm_name=name,
        profile="smoke",
        requested=Allocation(2, 1024),
    ).id


def to_predicted(store: Store, tid: str) -> None:
    for st in (S.SHADOWING, S.PROFILING):
        assert store.advance(tid, st, st.value)
    store.add_prediction(
        tid,
        Prediction(
            "shadow-measured", "x1.2", 0, 1.2, Requirement(0.9, 300, 100), Allocation(1, 512, 120)
        ),
    )
    assert store.advance(tid, S.PREDICTED, "predicted")


def test_get_many_returns_those_that_exist(store: Store) -> None:
    tids = [new(store, f"vm{i}") for i in range(520)]  # more than one chunk of 500
    got = store.get_many([*tids, "missing", tids[0]])
    assert sorted(got) == sorted(tids)
    assert got[tids[7]].vm_name == "vm7"
    assert store.get_many([]) == {}


def test_migrations_and_models_agree(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "db" / "v.db"
    migrate(make_engine(f"sqlite:///{path}"))
    assert path.stat().st_mode & 0o777 == 0o600


def test_state_changes_are_logged_in_order(store: Store) -> None:
    tid = new(store)
    to_predicted(store, tid)
    states = [e.state for e in store.events(tid) if e.kind == "state"]
    assert states == ["requested", "shadowing", "profiling", "predicted"]


def test_illegal_edge_is_refused_and_changes_nothing(store: Store) -> None:
    tid = new(store)
    with pytest.raises(IllegalTransition):
        store.advance(tid, S.RUNNING, "skip ahead")
    assert store.get(tid).state == "requested"
    assert len(store.events(tid)) == 1


def test_expectation_mismatch_is_a_lost_race_not_an_error(store: Store) -> None:
    tid = new(store)
    assert store.advance(tid, S.SHADOWING, "go", expect=[S.PROFILING]) is None
    assert store.get(tid).state == "requested"


def test_one_active_transition_per_vm_name(store: Store) -> None:
    new(store, "db1")
    with pytest.raises(ConflictError, match="still in progress"):
        new(store, "db1")


def test_concurrent_confirms_launch_once(store: Store) -> None:
    tid = new(store)
    to_predicted(store, tid)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def confirm() -> None:
        barrier.wait()
        try:
            store.confirm(
                tid,
                decision=Decision.PREDICTION,
                allocation=Allocation(1, 512, 120),
                prediction_id=None,
                warnings=[],
                risk_acknowledged=False,
            )
            outcomes.append("won")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert outcomes.count("conflict") == 7
    assert store.get(tid).state == "launching"
    assert [e.state for e in store.events(tid)].count("launching") == 1


def test_unknown_transition(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get("nope")


def test_leases_exclude_other_owners_until_expiry(store: Store) -> None:
    tid = new(store)
    assert store.take_lease(tid, "a", 30)
    assert not store.take_lease(tid, "b", 30)
    assert store.take_lease(tid, "a", 30)  # renewal
    store.release_lease(tid, "a")
    assert store.take_lease(tid, "b", -1)  # expired at once
    assert store.take_lease(tid, "c", 30)


def test_replace_history_never_doubles_and_keeps_other_sources(store: Store) -> None:
    from vmshadow.domain.history import HistoryRecord, ShadowRun, Size

    def rows(n: int, source: str) -> list[HistoryRecord]:
        shadow = ShadowRun(Size(1, 512), Requirement(0.5, 300.0, 10.0), {})
        need = Requirement(1.0, 600.0, 20.0)
        return [HistoryRecord(source, f"j{i}", shadow, Size(2, 2048), need, 1.0) for i in range(n)]

    assert store.replace_history("sar:a", rows(3, "sar:a")) == (0, 3)
    assert store.replace_history("sar:b", rows(2, "sar:b")) == (0, 2)
    assert store.replace_history("sar:a", rows(4, "sar:a")) == (3, 4)
    every = store.all_history()
    assert len(every) == store.history_count() == 6
    assert [r.source for r in every].count("sar:a") == 4
    assert [r.record.job for r in every if r.record] == ["j0", "j1", "j0", "j1", "j2", "j3"]


def test_list_filters_by_name_in_sql_and_pages_without_repeats(store: Store) -> None:
    for name in ("web1", "web2", "db1"):
        new(store, name)
    names = [r.vm_name for r in store.list_transitions(name="WEB")]
    assert sorted(names) == ["web1", "web2"]
    # The filter is text: '%' and '_' are characters, never wildcards.
    assert store.list_transitions(name="%") == [] and store.list_transitions(name="_") == []
    pages = [store.list_transitions(offset=i, limit=1)[0].id for i in range(3)]
    assert len(set(pages)) == 3


def test_a_restarted_controller_frees_only_its_hosts_dead_owners(store: Store) -> None:
    """After ``kill -9`` the new controller resumes at once, not ``lease_s`` later;
    a live process's lease, or another host's, still waits for expiry."""
    from vmshadow.store.fleet import release_dead_owners

    owners = {"h1:100:aa": "web1", "h1:200:bb": "web2", "h2:100:cc": "web3"}
    tids = {}
    for owner, name in owners.items():
        tids[owner] = new(store, name)
        assert store.take_lease(tids[owner], owner, 30)
    freed = release_dead_owners(store, "h1", lambda pid: pid == 200)
    assert freed == ["h1:100:aa"]
    assert store.take_lease(tids["h1:100:aa"], "h1:300:dd", 30)
    assert not store.take_lease(tids["h1:200:bb"], "h1:300:dd", 30)
    assert not store.take_lease(tids["h2:100:cc"], "h1:300:dd", 30)
