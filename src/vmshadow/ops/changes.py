"""A process's one ear on the database: PostgreSQL's ``LISTEN/NOTIFY``.

Each statement that adds events or samples sends a NOTIFY (a trigger,
``store/db.py``). One thread per process listens on its own connection and
calls what subscribed (the SSE hub, the event feed, the controller's wake-up),
which then read what is new at once instead of at their next poll. The polls
stay as the fallback: a lost connection or SQLite (which has no NOTIFY, and
where each process keeps one shared poller per reader) only costs latency.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from vmshadow.store.db import CHANNEL, listen_conninfo

log = logging.getLogger(__name__)

RECONNECT_S = 2.0


class ChangeSignal:
    def __init__(self, engine: Engine) -> None:
        self.conninfo = listen_conninfo(engine)
        self._subscribers: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self.conninfo is not None

    def add(self, fn: Callable[[], None]) -> None:
        self._subscribers.append(fn)

    def start(self) -> None:
        if self.conninfo is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vmshadow-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _notify(self) -> None:
        for fn in self._subscribers:
            try:
                fn()
            except Exception:  # one subscriber must not deafen the others
                log.exception("change subscriber %r failed", fn)

    def _run(self) -> None:
        import psycopg

        assert self.conninfo is not None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Whatever changed while (re)connecting is read by the next poll.
                    self._notify()
                    while not self._stop.is_set():
                        # A short timeout so stop() is seen; a burst is one wake-up.
                        got = False
                        for _ in conn.notifies(timeout=0.5):
                            got = True
                            break
                        if got:
                            self._notify()
            except psycopg.Error as exc:
                log.warning("LISTEN %s: %s; again in %s s", CHANNEL, exc, RECONNECT_S)
                self._stop.wait(RECONNECT_S)
