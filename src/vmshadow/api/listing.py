"""A page of the transition list, filtered by state and by name.

The store lists the newest transitions first, by state, up to a limit. An
offset and a name filter are worked out here over that: the window read
doubles until it holds the page (or the store runs out), so a page costs a
few reads of at most twice what it skips and shows. Paging in SQL belongs in
``Store.list_transitions``; this keeps the API's answer the same when it moves.
"""

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
    needle = (name or "").strip().lower()
    states = [state] if state else None
    want = offset + limit + 1  # one more tells whether a next page exists
    window = want
    while True:
        rows = store.list_transitions(states=states, limit=window)
        matching = [r for r in rows if needle in r.vm_name.lower()] if needle else rows
        if len(matching) >= want or len(rows) < window:
            break
        window *= 2
    shown = matching[offset : offset + limit]
    return TransitionPage(shown, offset, limit, more=len(matching) > offset + limit)
