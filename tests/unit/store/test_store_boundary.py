"""The store speaks domain types: no ORM row of a converted table is imported
outside ``vmshadow/store/``, and the store's reads hand out domain objects."""

from __future__ import annotations

import ast
from datetime import UTC
from pathlib import Path

import vmshadow
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.history import HistoryRecord, LaunchRecord, ShadowRun, Size, StoredHistory
from vmshadow.domain.prediction import Prediction, Requirement, StoredPrediction
from vmshadow.domain.samples import Source, StoredSample, UsagePoint
from vmshadow.domain.transition import (
    Decision,
    StoredConfirmation,
    StoredEvent,
    Transition,
    TransitionKind,
    TransitionState,
)
from vmshadow.store import fleet, rounds
from vmshadow.store.history import NewSource
from vmshadow.store.repository import Store

# Rows that stay inside the store; add a row class here once the store hands
# out its domain type instead.
STORE_ONLY = {
    "ConfirmationRow",
    "EventRow",
    "HistoryRow",
    "PredictionRow",
    "SampleRow",
    "TransitionRow",
}
SRC = Path(vmshadow.__file__).parent


def _leaks(path: Path) -> list[str]:
    """Each import of a store-only row (or of the whole models module) in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            names = {a.name for a in node.names}
            if node.module == "vmshadow.store.models":
                out += sorted(names & STORE_ONLY)
            elif node.module == "vmshadow.store" and "models" in names:
                out.append("vmshadow.store.models")
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name == "vmshadow.store.models"]
    return [f"{path}:{what}" for what in out]


def test_rows_stay_in_the_store() -> None:
    outside = [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] != "store"]
    assert len(outside) > 50  # the walk found the package, not an empty folder
    leaks = [leak for p in outside for leak in _leaks(p)]
    assert leaks == []


def test_the_walk_sees_a_leak(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f() -> None:\n    from vmshadow.store.models import TransitionRow\n")
    assert len(_leaks(bad)) == 1


def test_reads_return_transitions(store: Store) -> None:
    made = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web1", profile="smoke", requested=Allocation(2, 1024)
    )
    got = store.get(made.id)
    assert isinstance(made, Transition) and got == made
    assert got.state is TransitionState.REQUESTED and got.kind is TransitionKind.LAUNCH
    assert got.decision is None and got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == UTC.utcoffset(None)
    assert store.get_many([made.id]) == {made.id: got}
    assert store.unfinished() == [got]
    assert store.list_transitions() == [got]
    assert isinstance(store.bundle(made.id).transition, Transition)

    moved = store.advance(made.id, TransitionState.SHADOWING, "booting")
    assert moved is not None and moved.state is TransitionState.SHADOWING
    assert moved.version == got.version + 1


def test_predictions_and_confirmations_are_domain_values(store: Store) -> None:
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web2", profile="smoke", requested=Allocation(2, 1024)
    ).id
    for st in (TransitionState.SHADOWING, TransitionState.PROFILING, TransitionState.PREDICTED):
        store.advance(tid, st, st.value)
    pid = store.add_prediction(
        tid,
        Prediction("shadow-measured", "x1.2", 0, 1.2, Requirement(0.9, 300, 0), Allocation(1, 512)),
    )
    pred = store.latest_prediction(tid)
    assert isinstance(pred, StoredPrediction) and pred.id == pid
    assert pred.created_at.tzinfo is not None and pred.detail["need"]["vcpus"] == 0.9
    assert store.bundle(tid).prediction == pred
    done = store.confirm(
        tid,
        decision=Decision.PREDICTION,
        allocation=Allocation(1, 512),
        prediction_id=pid,
        warnings=[],
        risk_acknowledged=False,
    )
    assert done.decision is Decision.PREDICTION and done.final_vcpus == 1
    conf = store.confirmation(tid)
    assert isinstance(conf, StoredConfirmation) and store.bundle(tid).confirmation == conf
    assert conf.decision is Decision.PREDICTION and conf.prediction_id == pid
    assert conf.warnings == [] and conf.at.tzinfo is not None


def test_placement_decides_on_a_transition(store: Store) -> None:
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web3", profile="smoke", requested=Allocation(2, 1024)
    ).id
    assert fleet.claim(store, [tid], "me", 60) == [tid]
    seen: list[object] = []

    def decide(t: Transition, _held: list[fleet.Holding]) -> fleet.Change | None:
        seen.append(t)
        return None

    assert fleet.place(store, tid, "me", decide) is None
    assert seen == [store.get(tid)] and fleet.vm_allocation(store.get(tid)) == Allocation(2, 1024)


def test_samples_are_points_with_their_bookkeeping(store: Store) -> None:
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web4", profile="smoke", requested=Allocation(2, 1024)
    ).id
    host = UsagePoint(1.0, Source.HOST, "cpu", 0.5, 300.0, 1.0, 2.0, 10.0, 20.0)
    guest = UsagePoint(2.0, Source.GUEST, "cpu", 0.4, 250.0, 1.0, 2.0, 10.0, 20.0, 3.0, 4.0)
    store.add_samples(tid, "shadow", 2, [host, guest])
    got = store.samples(tid)
    assert all(isinstance(s, StoredSample) for s in got)
    assert [(s.transition_id, s.target, s.run, s.point) for s in got] == [
        (tid, "shadow", 2, host),
        (tid, "shadow", 2, guest),
    ]
    assert got[0].id < got[1].id and store.samples(tid, after=got[0].id) == got[1:]


def test_events_are_domain_values_in_their_order(store: Store) -> None:
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web5", profile="smoke", requested=Allocation(2, 1024)
    ).id
    store.add_event(tid, "info", "waiting for a host")
    store.advance(tid, TransitionState.SHADOWING, "booting")
    got = store.events(tid)
    assert all(isinstance(e, StoredEvent) for e in got)
    assert [(e.transition_id, e.kind, e.state, e.message) for e in got] == [
        (tid, "state", "requested", "launch of web5 requested: 2 vCPU, 1024 MiB"),
        (tid, "info", None, "waiting for a host"),
        (tid, "state", "shadowing", "booting"),
    ]
    assert got[0].id < got[1].id < got[2].id and got[0].at.tzinfo is not None
    assert store.events(tid, after=got[0].id) == got[1:]
    assert store.events_since(got[1].id) == got[2:] and store.last_event_id() == got[2].id
    assert store.bundle(tid).events == got
    assert list(rounds.new_rows(store, [tid], got[0].id, 0, 10).events) == got[1:]


def test_history_reads_give_records_with_their_bookkeeping(store: Store) -> None:
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web6", profile="smoke", requested=Allocation(2, 1024)
    ).id
    shadow = ShadowRun(Size(1, 512, "c5.large"), Requirement(0.5, 300.0, 10.0), {"f": 1.0})
    imported = HistoryRecord("lab", "spark_scan", shadow, Size(2, 2048), Requirement(1, 600, 20), 9)
    store.import_source(
        NewSource("lab", "lumos", None, None, store.get(tid).created_at), [imported]
    )
    need = Requirement(0.9, 500.0, 15.0)
    doc = {"vcpus": 1, "memory_mib": 512, "need": need.as_dict(), "features": {}}
    launch = LaunchRecord(tid, "smoke", "smoke", None, doc, Allocation(1, 512), need, 60.0)
    store.add_history(launch)
    got = store.all_history()
    assert all(isinstance(h, StoredHistory) for h in got)
    assert [(h.source, h.transition_id) for h in got] == [("lab", None), ("vmshadow", tid)]
    assert got[0].record == imported and got[0].created_at.tzinfo is not None
    assert got[1].record is not None and got[1].record.observed == need
    assert store.history() == got[::-1] and store.all_history(sources=["lab"]) == got[:1]
