"""What the API's event streams (``api.streams``) read each round, across every
watched transition at once: new events, new samples, and the transitions'
states. Here rather than in the API so that no table is queried outside the
store, and the database's errors become ``StoreError`` like everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from vmshadow.domain.samples import StoredSample
from vmshadow.domain.transition import StoredEvent, TransitionState
from vmshadow.store.base import StoreBase, translated
from vmshadow.store.mapping import to_event, to_sample
from vmshadow.store.models import EventRow, SampleRow, TransitionRow


@dataclass(frozen=True)
class NewRows:
    events: Sequence[StoredEvent]
    samples: Sequence[StoredSample]
    states: dict[str, TransitionState]


@translated
def max_ids(store: StoreBase) -> tuple[int, int]:
    """The newest event's and sample's ids (0 when there are none)."""
    with store.session() as s:
        ev = s.scalar(select(func.max(EventRow.id))) or 0
        sa = s.scalar(select(func.max(SampleRow.id))) or 0
    return int(ev), int(sa)


@translated
def new_rows(
    store: StoreBase, tids: Sequence[str], ev_after: int, sa_after: int, sample_limit: int
) -> NewRows:
    """Events and (at most ``sample_limit``) samples of ``tids`` past the two
    ids, oldest first, then the states of ``tids``: read in this order, so a
    transition's final event is read no later than the state it led to."""
    with store.session() as s:
        events = s.scalars(
            select(EventRow)
            .where(EventRow.transition_id.in_(tids), EventRow.id > ev_after)
            .order_by(EventRow.id)
        ).all()
        samples = s.scalars(
            select(SampleRow)
            .where(SampleRow.transition_id.in_(tids), SampleRow.id > sa_after)
            .order_by(SampleRow.id)
            .limit(sample_limit)
        ).all()
        states = s.execute(
            select(TransitionRow.id, TransitionRow.state).where(TransitionRow.id.in_(tids))
        ).all()
    states_of = {tid: TransitionState(st) for tid, st in states}
    return NewRows([to_event(r) for r in events], [to_sample(r) for r in samples], states_of)
