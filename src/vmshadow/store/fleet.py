"""What several controllers on one database need: claiming work, holding it,
and placing transitions on hosts without two controllers overbooking one.

- **Claim**: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks the unleased (or
  expired) rows no other controller is claiming this instant, and leases them
  in the same transaction. Controllers polling at once split the work instead
  of queueing on each other's row locks. (SQLite has no row locks: there one
  write transaction at a time does the same, for the one controller SQLite is
  meant for.)
- **Hold**: a lease is renewed only by its owner. A controller that finds its
  lease taken (it stalled past expiry and another took over) stops driving.
- **Place**: reading the bookings and writing a placement happen under one
  PostgreSQL advisory transaction lock, so two controllers never both see the
  same free room. The write is a compare-and-set on the row's version and
  lease owner: a controller that lost its lease writes nothing.

Like the store's methods, these raise ``StoreError`` for the database's errors.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, text, update

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.placement import Holding
from vmshadow.domain.transition import TERMINAL, Transition, TransitionState, check_edge
from vmshadow.store.base import insert_event, now, translated
from vmshadow.store.db import is_postgres
from vmshadow.store.mapping import to_transition
from vmshadow.store.models import TransitionRow
from vmshadow.store.repository import Store
from vmshadow.store.snapshots import UNFINISHED

# pg_advisory_xact_lock key for placement decisions: "vmsh" and 2.
PLACEMENT_LOCK = 0x766D_7368_0002
_TERMINAL = [s.value for s in TERMINAL]
# SQLite is one controller process: a process-wide lock orders its threads.
_local_placement = threading.Lock()


@translated
def claim(store: Store, candidates: Sequence[str], owner: str, seconds: float) -> list[str]:
    """Lease those of ``candidates`` that are free, expired or already ours and that
    no other controller is claiming right now; returns the ids leased."""
    if not candidates:
        return []
    t = now()
    with store.session() as s, s.begin():
        ids = list(
            s.scalars(
                select(TransitionRow.id)
                .where(
                    TransitionRow.id.in_(list(candidates)),
                    UNFINISHED,
                    or_(
                        TransitionRow.lease_owner.is_(None),
                        TransitionRow.lease_owner == owner,
                        TransitionRow.lease_until < t,
                    ),
                )
                .order_by(TransitionRow.created_at)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            s.execute(
                update(TransitionRow)
                .where(TransitionRow.id.in_(ids))
                .values(lease_owner=owner, lease_until=t + timedelta(seconds=seconds))
            )
    return ids


@translated
def hold(store: Store, tid: str, owner: str, seconds: float) -> bool:
    """Renew our lease; False when another controller has taken the transition."""
    with store.session() as s, s.begin():
        done = s.execute(
            update(TransitionRow)
            .where(TransitionRow.id == tid, TransitionRow.lease_owner == owner)
            .values(lease_until=now() + timedelta(seconds=seconds))
        )
        return done.rowcount == 1


@translated
def holdings(store: Store) -> list[Holding]:
    """Every transition's claim on the pool, oldest first (see ``placement.bookings``)."""
    with store.session() as s:
        return store.holdings_snapshot.read(s)


@dataclass(frozen=True)
class Change:
    """What a placement decision writes: fields, and a state and event if it moves."""

    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    to: TransitionState | None = None


@translated
def place(
    store: Store,
    tid: str,
    owner: str,
    decide: Callable[[Transition, list[Holding]], Change | None],
) -> Change | None:
    """Run ``decide`` on the current bookings with the placement lock held and
    write its change, if we still lease the transition. Returns what was written."""
    pg = is_postgres(store.engine)
    with (
        contextlib.nullcontext() if pg else _local_placement,
        store.session() as s,
        s.begin(),
    ):
        if pg:
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PLACEMENT_LOCK})
        row = s.get(TransitionRow, tid)
        if row is None or row.lease_owner != owner:
            return None
        change = decide(to_transition(row), store.holdings_snapshot.read(s))
        if change is None:
            return None
        values: dict[str, Any] = {
            **change.fields,
            "version": row.version + 1,
            "updated_at": now(),
        }
        if change.to is not None:
            check_edge(TransitionState(row.state), change.to)
            values["state"] = change.to.value
        done = s.execute(
            update(TransitionRow)
            .where(
                TransitionRow.id == tid,
                TransitionRow.version == row.version,
                TransitionRow.lease_owner == owner,
            )
            .values(**values)
        )
        if done.rowcount != 1:
            s.rollback()
            return None
        kind = "state" if change.to is not None else "info"
        insert_event(s, tid, kind, change.to, change.message)
    return change


def vm_allocation(row: Transition) -> Allocation:
    """The size the VM of ``row`` is booked at: final once confirmed, else as requested."""
    if row.final_vcpus and row.final_memory_mib:
        return Allocation(row.final_vcpus, row.final_memory_mib, row.final_iops)
    return Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)


@translated
def release_stale_shadows(store: Store) -> int:
    """Unbook shadows nobody drives: a transition left in ``predicted`` by a
    controller that died (its shadow is reaped; nobody resumes ``predicted``)."""
    t = now()
    with store.session() as s, s.begin():
        done = s.execute(
            update(TransitionRow)
            .where(
                TransitionRow.shadow_live.is_(True),
                or_(
                    TransitionRow.state.in_(_TERMINAL),
                    TransitionRow.state == TransitionState.PREDICTED.value,
                ),
                or_(TransitionRow.lease_owner.is_(None), TransitionRow.lease_until < t),
            )
            .values(shadow_live=False)
        )
        return int(done.rowcount or 0)


def release_dead_owners(store: Store, host: str, alive: Callable[[int], bool]) -> list[str]:
    """Free the leases of controllers on ``host`` whose process is gone, so that
    a controller restarted after a crash (``kill -9``, the supervisor's restart)
    resumes their transitions at once, not ``lease_s`` later. Owners are
    ``host:pid:nonce`` (``Controller.owner``); another host's owners, or a pid
    that is alive (even reused by another process), wait for expiry as before."""
    with store.session() as s:
        owners = s.execute(
            select(TransitionRow.lease_owner)
            .where(TransitionRow.lease_owner.like(f"{host}:%"), TransitionRow.lease_until >= now())
            .distinct()
        ).scalars()
        dead = [
            o
            for o in owners
            if o is not None
            and (parts := o.split(":"))[0] == host
            and len(parts) == 3
            and parts[1].isdigit()
            and not alive(int(parts[1]))
        ]
    if dead:
        with store.session() as s, s.begin():
            s.execute(
                update(TransitionRow)
                .where(TransitionRow.lease_owner.in_(dead))
                .values(lease_owner=None, lease_until=None)
            )
    return dead
