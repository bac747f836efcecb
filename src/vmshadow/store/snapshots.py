"""The unfinished transitions, read every controller pass and mapped once per change.

At 1,000 unfinished transitions a pass spent 34 ms reading and mapping all of
them (44 % of the controller's samples), though only a few change between two
passes. Each pass now reads a small key per row (2 ms at 1,000) and reads and
maps in full only the rows whose key moved. The key holds what every write
changes: the version (each write of fields or state bumps it), the state and
``updated_at`` (in case a write elsewhere forgot the version), the lease and
the shadow's booking (which change without a version bump).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Select, or_, select
from sqlalchemy.orm import Session

from vmshadow.domain.placement import Holding
from vmshadow.domain.transition import TERMINAL, Transition
from vmshadow.store.mapping import to_transition
from vmshadow.store.models import TransitionRow

COLUMNS = tuple(TransitionRow.__table__.columns)
_KEY = (
    TransitionRow.version,
    TransitionRow.state,
    TransitionRow.updated_at,
    TransitionRow.lease_owner,
    TransitionRow.lease_until,
    TransitionRow.shadow_live,
)
# Where the key's values sit in a row of ``COLUMNS`` (a full read).
_FULL_KEY = operator.itemgetter(*(COLUMNS.index(c) for c in _KEY))
T = TypeVar("T")
_CHUNK = 500  # ids per IN (...): under any SQLite's variable limit
_TERMINAL = frozenset(st.value for st in TERMINAL)
# The one filter for "not finished", here and in the store's counts and claims.
UNFINISHED = TransitionRow.state.not_in(sorted(_TERMINAL))


def rows_by_ids(
    s: Session | Connection, columns: Sequence[Any], ids: Sequence[str]
) -> Iterator[Any]:
    """``columns`` of the transitions with these ids (those that exist), in few queries."""
    for i in range(0, len(ids), _CHUNK):
        yield from s.execute(select(*columns).where(TransitionRow.id.in_(ids[i : i + _CHUNK])))


class _Snapshot(Generic[T]):
    """Rows mapped to ``T`` by id, each kept with the key it was read at.

    ``keys`` selects the id and the key of every row wanted, in the order
    wanted; rows whose key moved (or that are new) are read in full
    (``columns``), keyed by ``key_of`` and mapped by ``to_value``; ``keep``
    drops a row that changed between the two reads into one not wanted. Each
    row is cached under the key it was read at: the next read sees it again
    if it changed meanwhile."""

    def __init__(
        self,
        keys: Select[Any],
        columns: Sequence[Any],
        key_of: Callable[[Any], tuple[Any, ...]],
        to_value: Callable[[Any], T],
        keep: Callable[[T], bool] = lambda _value: True,
    ) -> None:
        self._keys, self._columns = keys, columns
        self._key_of, self._to_value, self._keep = key_of, to_value, keep
        self._known: dict[str, tuple[tuple[Any, ...], T]] = {}
        self._lock = threading.Lock()

    def read(self, s: Session) -> list[T]:
        keys = s.execute(self._keys).all()
        with self._lock:
            known = self._known
        stale = {r[0] for r in keys if (got := known.get(r[0])) is None or got[0] != r[1:]}
        fresh = {
            row.id: (self._key_of(row), self._to_value(row))
            for row in rows_by_ids(s, self._columns, sorted(stale))
        }
        out: list[T] = []
        kept: dict[str, tuple[tuple[Any, ...], T]] = {}
        for r in keys:
            got = fresh.get(r[0]) if r[0] in stale else known.get(r[0])
            if got is None or not self._keep(got[1]):  # gone, or not wanted any more
                continue
            kept[r[0]] = got
            out.append(got[1])
        with self._lock:
            self._known = kept
        return out


class UnfinishedSnapshot(_Snapshot[Transition]):
    """The unfinished transitions, oldest first, as the database has them now."""

    def __init__(self) -> None:
        super().__init__(
            select(TransitionRow.id, *_KEY).where(UNFINISHED).order_by(TransitionRow.created_at),
            COLUMNS,
            lambda row: tuple(_FULL_KEY(row)),
            # Looked up at each call, here and below: the tests count the
            # rows mapped by replacing the mappers.
            lambda row: to_transition(row),
            keep=lambda t: t.state not in TERMINAL,
        )


class HoldingsSnapshot(_Snapshot[Holding]):
    """Every placed transition's claim on the pool, oldest first, as
    ``placement.bookings`` wants them.

    Each placement reads every booking under the placement lock; at 1,000
    transitions reading and mapping them all was 14 % of the controller's CPU.
    The rows that book nothing (never placed, no live shadow) are not read,
    and those unchanged since the last placement (same version and shadow
    flag) are not mapped again. Read inside the placement's transaction, so
    what another controller wrote meanwhile is seen.
    """

    def __init__(self) -> None:
        super().__init__(
            select(TransitionRow.id, TransitionRow.version, TransitionRow.shadow_live)
            .where(or_(TransitionRow.vm_host.is_not(None), TransitionRow.shadow_live.is_(True)))
            .order_by(TransitionRow.created_at, TransitionRow.id),
            _HOLDING,
            lambda row: (row.version, row.shadow_live),
            lambda row: _holding(row),
        )


_HOLDING = (
    TransitionRow.id,
    TransitionRow.version,
    TransitionRow.vm_name,
    TransitionRow.state,
    TransitionRow.vm_host,
    TransitionRow.req_vcpus,
    TransitionRow.req_memory_mib,
    TransitionRow.final_vcpus,
    TransitionRow.final_memory_mib,
    TransitionRow.vm_started,
    TransitionRow.shadow_host,
    TransitionRow.shadow_live,
)


def _holding(r: Any) -> Holding:
    return Holding(
        transition_id=r.id,
        vm_name=r.vm_name,
        active=r.state not in _TERMINAL,
        vm_host=r.vm_host,
        vm_vcpus=r.final_vcpus or r.req_vcpus,
        vm_memory_mib=r.final_memory_mib or r.req_memory_mib,
        vm_started=bool(r.vm_started),
        shadow_host=r.shadow_host if r.shadow_live else None,
    )
