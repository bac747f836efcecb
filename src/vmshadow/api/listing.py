"""A page of the transition list, filtered by state and by name (in the store's SQL)."""

from __future__ import annotations

from dataclasses import dataclass

from vmshadow.domain.transition import TransitionState
from vmshadow.store.models import TransitionRow
from vmshadow.store.repository import Store

MAX_PAGE = 1000
MAX_OFFSET = 100_000


@dataclass(frozen=True)
class TransitionPage:
    rows: list[TransitionRow]
    offset: int
    limit: int
    more: bool  # a next page exists


def list_page(
    store: Store,
    *,
    state: TransitionState | None = None,
    name: str | None = None,
    offset: int = 0,
    limit: int = 200,
) -> TransitionPage:
    """Rows ``offset`` to ``offset + limit`` of the newest-first list; ``name``
    matches anywhere in the VM's name, ignoring case."""
    rows = store.list_transitions(
        states=[state] if state else None,
        name=(name or "").strip() or None,
        offset=offset,
        limit=limit + 1,  # one more tells whether a next page exists
    )
    return TransitionPage(rows[:limit], offset, limit, more=len(rows) > limit)
