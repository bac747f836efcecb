"""One transition with what its document shows, read in one statement.

Every client polls ``GET /transitions/{id}``: the row, its latest prediction,
its confirmation and its events took four round trips, each holding a pooled
connection. Here they are one outer-joined SELECT (a row per event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmshadow.domain.prediction import StoredPrediction
from vmshadow.domain.transition import StoredConfirmation, StoredEvent, Transition
from vmshadow.store.mapping import to_confirmation, to_event, to_prediction, to_transition
from vmshadow.store.models import ConfirmationRow, EventRow, PredictionRow, TransitionRow


@dataclass(frozen=True)
class TransitionBundle:
    transition: Transition
    prediction: StoredPrediction | None
    confirmation: StoredConfirmation | None
    events: list[StoredEvent]

    def reader(self, store: Any) -> Any:
        """``store`` with this transition's prediction, confirmation and events
        answered from the bundle (for code that asks the store for each)."""
        return _BundleReader(store, self)


class _BundleReader:
    def __init__(self, store: Any, got: TransitionBundle) -> None:
        self._store, self._got = store, got

    def latest_prediction(self, _tid: str) -> StoredPrediction | None:
        return self._got.prediction

    def confirmation(self, _tid: str) -> StoredConfirmation | None:
        return self._got.confirmation

    def events(self, _tid: str, *, after: int = 0) -> list[StoredEvent]:
        return [e for e in self._got.events if e.id > after]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def read_bundle(s: Session, tid: str) -> TransitionBundle | None:
    latest = (
        select(func.max(PredictionRow.id))
        .where(PredictionRow.transition_id == tid)
        .scalar_subquery()
    )
    q = (
        select(TransitionRow, PredictionRow, ConfirmationRow, EventRow)
        .select_from(TransitionRow)
        .outerjoin(PredictionRow, PredictionRow.id == latest)
        .outerjoin(ConfirmationRow, ConfirmationRow.transition_id == TransitionRow.id)
        .outerjoin(EventRow, EventRow.transition_id == TransitionRow.id)
        .where(TransitionRow.id == tid)
        .order_by(EventRow.id)
    )
    rows = s.execute(q).all()
    if not rows:
        return None
    first = rows[0]
    pred = to_prediction(first[1]) if first[1] is not None else None
    conf = to_confirmation(first[2]) if first[2] is not None else None
    events = [to_event(r[3]) for r in rows if r[3] is not None]
    return TransitionBundle(to_transition(first[0]), pred, conf, events)
