"""Each transition's log: what happened to it, in order, appended and never
changed. The controller, the API's streams, the document and the process-wide
feed (``ops.feed``) read it as ``StoredEvent``s."""

from __future__ import annotations

from sqlalchemy import func, select

from vmshadow.domain.transition import StoredEvent, TransitionState
from vmshadow.store.base import StoreBase, insert_event, translated
from vmshadow.store.mapping import to_event
from vmshadow.store.models import EventRow


class EventStore(StoreBase):
    @translated
    def add_event(
        self, tid: str, kind: str, message: str, state: TransitionState | None = None
    ) -> None:
        with self.engine.begin() as c:
            insert_event(c, tid, kind, state, message)

    @translated
    def events(self, tid: str, *, after: int = 0) -> list[StoredEvent]:
        q = (
            select(EventRow)
            .where(EventRow.transition_id == tid, EventRow.id > after)
            .order_by(EventRow.id)
        )
        with self.session() as s:
            return [to_event(r) for r in s.scalars(q)]

    @translated
    def events_since(self, after: int, *, limit: int = 1000) -> list[StoredEvent]:
        """Every transition's events with an id above ``after``, oldest first (the
        process-wide feed behind metrics and webhooks reads the log this way)."""
        q = select(EventRow).where(EventRow.id > after).order_by(EventRow.id).limit(limit)
        with self.session() as s:
            return [to_event(r) for r in s.scalars(q)]

    @translated
    def last_event_id(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.max(EventRow.id))) or 0)
