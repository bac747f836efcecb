"""One reader of the event log per process, for everything that follows it.

Every state change and note of every transition is a row of the event log
(``store.transitions``), whichever controller made it. The feed reads the rows
past its cursor once a second (one query, however many subscribers) and
calls each subscriber with them in order; on PostgreSQL a NOTIFY
(``changes.py``) wakes it as soon as a row is added, the poll stays as the
fallback. A subscriber that fails is logged
and the feed goes on: metrics and webhooks must never stop each other, nor
the service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from vmshadow.domain.errors import VmshadowError
from vmshadow.store.repository import Store

log = logging.getLogger(__name__)

POLL_S = 1.0
MIN_GAP_S = 0.1
BATCH = 1000  # rows a round reads at most; a backlog drains over several rounds


@dataclass(frozen=True)
class FeedEvent:
    """One row of the event log, as subscribers see it (no ORM row leaves the feed)."""

    id: int
    transition_id: str
    at: datetime
    kind: str  # state | info | warning | error
    state: str | None
    message: str


Subscriber = Callable[[FeedEvent], None]


class EventFeed:
    def __init__(self, store: Store, *, poll_s: float = POLL_S, after: int | None = None) -> None:
        """``after``: the cursor to start from; None starts at the log's end
        (what happened before the process started is not news to it)."""
        self.store = store
        self.poll_s = poll_s
        self.cursor = after
        self._subscribers: list[Subscriber] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def poll_once(self) -> int:
        """Read what is new and hand it on; returns how many events were read."""
        if self.cursor is None:
            self.cursor = self.store.last_event_id()
            return 0
        rows = self.store.events_since(self.cursor, limit=BATCH)
        for row in rows:
            event = FeedEvent(row.id, row.transition_id, row.at, row.kind, row.state, row.message)
            for fn in self._subscribers:
                try:
                    fn(event)
                except Exception:
                    log.exception("event feed subscriber %r failed on event %s", fn, row.id)
            self.cursor = row.id
        return len(rows)

    def start(self) -> None:
        if self._thread is not None or not self._subscribers:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vmshadow-feed", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Read now rather than at the next poll (thread-safe)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # A full batch means a backlog: read on without waiting.
                if self.poll_once() >= BATCH:
                    continue
            except VmshadowError as exc:  # the database is away: try again next round
                log.warning("event feed: %s; retrying in %s s", exc, self.poll_s)
            # A NOTIFY comes with every statement under load: one read per burst.
            self._stop.wait(MIN_GAP_S)
            self._wake.wait(max(0.0, self.poll_s - MIN_GAP_S))
            self._wake.clear()
