"""A page of the transition list, filtered by state and by name (in the store's SQL).

Pages are read by cursor: ``next_cursor`` names the last row of a page
(its creation time and id, opaque to clients), and the next page starts
after it, so rows created meanwhile neither shift it nor repeat on it. The
older ``offset`` still works, for the web UI's page numbers.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.transition import Transition, TransitionState
from vmshadow.store.repository import Store

MAX_PAGE = 1000
MAX_OFFSET = 100_000


@dataclass(frozen=True)
class TransitionPage:
    rows: list[Transition]
    offset: int
    limit: int
    more: bool  # a next page exists

    @property
    def next_cursor(self) -> str | None:
        if not self.more or not self.rows:
            return None
        last = self.rows[-1]
        raw = json.dumps([last.created_at.isoformat(), last.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """The row a cursor names; a cursor that is not one of ours is a 422 on ``cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, tid = json.loads(raw)
        if not isinstance(tid, str) or not isinstance(at, str):
            raise ValueError("not a cursor")
        return datetime.fromisoformat(at), tid
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ConfigError("cursor", "not a cursor this list gave (use the next link)") from None


def list_page(
    store: Store,
    *,
    state: TransitionState | None = None,
    name: str | None = None,
    offset: int = 0,
    limit: int = 200,
    cursor: str | None = None,
) -> TransitionPage:
    """Rows ``offset`` to ``offset + limit`` of the newest-first list (or the
    ``limit`` after ``cursor``); ``name`` matches anywhere in the VM's name,
    ignoring case."""
    if cursor is not None and offset:
        raise ConfigError("cursor", "give cursor or offset, not both")
    rows = store.list_transitions(
        states=[state] if state else None,
        name=(name or "").strip() or None,
        offset=offset,
        limit=limit + 1,  # one more tells whether a next page exists
        before=parse_cursor(cursor) if cursor is not None else None,
    )
    return TransitionPage(rows[:limit], offset, limit, more=len(rows) > limit)
