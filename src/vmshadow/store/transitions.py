"""Transitions and their confirmations: creating, reading, and moving them on
(their events are ``store.events``).

Every state change is a compare-and-set: ``UPDATE ... WHERE id = ? AND state
IN (...)`` together with its event row, in one transaction. Whoever loses a
race (two confirms, a confirm and a cancel, two controllers) sees ``None`` or
a ``ConflictError`` and nothing half-written.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError, NotFoundError
from vmshadow.domain.transition import (
    TERMINAL,
    Decision,
    StoredConfirmation,
    Transition,
    TransitionKind,
    TransitionState,
    check_edge,
)
from vmshadow.store.base import (
    StoreBase,
    alloc_text,
    aware,
    insert_event,
    new_transition_id,
    now,
    translated,
)
from vmshadow.store.bundle import TransitionBundle, read_bundle
from vmshadow.store.db import serialize_creates
from vmshadow.store.mapping import to_confirmation, to_transition
from vmshadow.store.models import ConfirmationRow, TransitionRow
from vmshadow.store.snapshots import (
    COLUMNS,
    UNFINISHED,
    HoldingsSnapshot,
    UnfinishedSnapshot,
    rows_by_ids,
)

# Reads select the columns, not the mapped class: they are mapped to domain
# objects at once, so an ORM instance per row would be built only to be
# discarded (``Session.get`` was a tenth of the controller's CPU at 100
# concurrent transitions, for reads of one row).
_COLUMNS = COLUMNS
_GET = select(*_COLUMNS).where(TransitionRow.id == bindparam("tid"))
# What a create checks under its lock, in one round trip: how many transitions
# are unfinished, and the unfinished one of this VM's name, if any.
_CREATE_CHECK = select(
    func.count(),
    func.max(case((TransitionRow.vm_name == bindparam("vm_name"), TransitionRow.id))),
).where(UNFINISHED)
_STATE = select(TransitionRow.state, TransitionRow.version).where(
    TransitionRow.id == bindparam("tid")
)


class TransitionStore(StoreBase):
    """The transitions table and its confirmations."""

    @translated
    def create_transition(
        self,
        *,
        kind: TransitionKind,
        vm_name: str,
        profile: str,
        requested: Allocation,
        image: str = "builtin",
        load: float | None = None,
        scheduled_at: datetime | None = None,
        fast_launch: bool = False,
        previous: Allocation | None = None,
        max_active: int | None = None,
        guest: dict[str, Any] | None = None,
        policy: str = "manual",
        adoption: dict[str, Any] | None = None,
    ) -> Transition:
        """Insert a requested transition; a ConflictError when ``vm_name`` has one
        in progress or ``max_active`` transitions are unfinished. Both are checked
        under a lock held to the insert's commit: a count in one transaction and
        an insert in another let 200 concurrent creates past a quota of 100."""
        t = now()
        # The row's columns (the table's defaults fill the rest), inserted as
        # they are and mapped from the same values.
        values: dict[str, Any] = dict(
            id=new_transition_id(),
            kind=kind.value,
            vm_name=vm_name,
            profile=profile,
            image=image,
            load=load,
            req_vcpus=requested.vcpus,
            req_memory_mib=requested.memory_mib,
            req_iops=requested.iops,
            scheduled_at=scheduled_at,
            fast_launch=fast_launch,
            state=TransitionState.REQUESTED.value,
            created_at=t,
            updated_at=t,
            version=1,
            vm_defined=False,
            vm_started=False,
            shadow_live=False,
            previous_vcpus=previous.vcpus if previous else None,
            previous_memory_mib=previous.memory_mib if previous else None,
            guest=guest,
            policy=policy,
            # origin, domain_uuid, adopted and detect_key of a detected request.
            **(adoption or {}),
        )
        row = TransitionRow(**values)
        what = f"{kind.value} of {vm_name} requested: {alloc_text(requested)}"
        if scheduled_at:
            what += f", scheduled at {scheduled_at.isoformat()}"
        # A plain INSERT: every create waits for the one before to commit, so
        # the time between the lock and the commit is every create's wait. An
        # ORM flush there, and a round trip per check, made 100 creates on
        # PostgreSQL queue for 2.5 s (p99) on the bench's 2 cores.
        with self.engine.connect() as c, c.begin():
            serialize_creates(c)
            count, active = c.execute(_CREATE_CHECK, {"vm_name": vm_name}).one()
            if max_active is not None and count >= max_active:
                raise ConflictError(
                    f"{count} transitions are unfinished, the quota is {max_active}: "
                    "wait or cancel some"
                )
            if active:
                raise ConflictError(
                    f"vm_name: transition {active} for {vm_name!r} is still in progress"
                )
            if row.detect_key is not None:
                # The unique index refuses a second one anyway; this says why.
                taken = c.scalar(
                    select(TransitionRow.id).where(TransitionRow.detect_key == row.detect_key)
                )
                if taken:
                    raise ConflictError(f"domain {row.detect_key} is transition {taken}'s")
            c.execute(insert(TransitionRow).values(values))
            insert_event(c, row.id, "state", TransitionState.REQUESTED, what)
        return to_transition(row)

    @translated
    def get(self, tid: str) -> Transition:
        # A connection, not a session: a session's set-up was most of a one-row
        # read's cost (0.25 ms against 0.06 ms), and workers read their row often.
        with self.engine.connect() as c:
            row = c.execute(_GET, {"tid": tid}).one_or_none()
        if row is None:
            raise NotFoundError(f"no transition {tid!r}")
        return to_transition(row)

    @translated
    def bundle(self, tid: str) -> TransitionBundle:
        """The transition, its latest prediction, confirmation and events in one
        statement: every client polls ``GET /transitions/{id}``, and four round
        trips each held a pooled connection four times as long."""
        with self.session() as s:
            got = read_bundle(s, tid)
        if got is None:
            raise NotFoundError(f"no transition {tid!r}")
        return got

    @translated
    def get_many(self, tids: Iterable[str]) -> dict[str, Transition]:
        """The transitions of these ids that exist, by id, in few queries."""
        with self.session() as s:
            rows = rows_by_ids(s, _COLUMNS, sorted(set(tids)))
            return {row.id: to_transition(row) for row in rows}

    @translated
    def list_transitions(
        self,
        *,
        states: Iterable[TransitionState] | None = None,
        name: str | None = None,
        offset: int = 0,
        limit: int = 200,
        before: tuple[datetime, str] | None = None,
    ) -> list[Transition]:
        """Newest first; ``name`` matches anywhere in the VM's name, ignoring case;
        ``before`` (created_at, id) starts after that row (a cursor: unlike an
        offset, rows created meanwhile neither shift nor repeat the next page)."""
        q = (
            select(*_COLUMNS)
            # The id breaks ties of created_at, so that pages neither repeat nor skip rows.
            .order_by(TransitionRow.created_at.desc(), TransitionRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        if before is not None:
            at, tid = before
            q = q.where(
                or_(
                    TransitionRow.created_at < at,
                    and_(TransitionRow.created_at == at, TransitionRow.id < tid),
                )
            )
        if states is not None:
            q = q.where(TransitionRow.state.in_([s.value for s in states]))
        if name:
            # autoescape: a '%' or '_' in the filter is a character, not a wildcard.
            q = q.where(func.lower(TransitionRow.vm_name).contains(name.lower(), autoescape=True))
        with self.session() as s:
            return [to_transition(r) for r in s.execute(q)]

    @translated
    def count_unfinished(self) -> int:
        with self.session() as s:
            return count_unfinished_in(s)

    @translated
    def unfinished(self) -> list[Transition]:
        """Oldest first; rows unchanged since the last call are not mapped again."""
        with self.session() as s:
            return self._unfinished.read(s)

    @functools.cached_property
    def _unfinished(self) -> UnfinishedSnapshot:
        return UnfinishedSnapshot()

    @functools.cached_property
    def holdings_snapshot(self) -> HoldingsSnapshot:
        """Every booking, for ``store.fleet``'s placements (see ``store.snapshots``)."""
        return HoldingsSnapshot()

    @translated
    def advance(
        self,
        tid: str,
        to: TransitionState,
        message: str,
        *,
        expect: Iterable[TransitionState] | None = None,
        **fields: Any,
    ) -> Transition | None:
        """Move to ``to`` if the transition is in one of ``expect`` (default: any
        state with a legal edge to ``to``); None when it was not (a lost race)."""
        with self.session() as s, s.begin():
            row = s.execute(_STATE, {"tid": tid}).one_or_none()
            if row is None:
                raise NotFoundError(f"no transition {tid!r}")
            current = TransitionState(row.state)
            allowed = set(expect) if expect is not None else None
            if allowed is not None and current not in allowed:
                return None
            if current == to:
                return None
            check_edge(current, to)
            if to in TERMINAL:
                # The domain a detected request came from may ask again.
                fields.setdefault("detect_key", None)
            done = s.execute(
                update(TransitionRow)
                .where(TransitionRow.id == tid, TransitionRow.version == row.version)
                .values(
                    state=to.value,
                    version=row.version + 1,
                    updated_at=now(),
                    **fields,
                )
            )
            if done.rowcount != 1:
                s.rollback()
                return None
            insert_event(s, tid, "state", to, message)
        return self.get(tid)

    @translated
    def update_fields(
        self, tid: str, *, expect: Iterable[TransitionState] | None = None, **fields: Any
    ) -> bool:
        """Change bookkeeping fields without changing state (compare-and-set on state)."""
        q = update(TransitionRow).where(TransitionRow.id == tid)
        if expect is not None:
            q = q.where(TransitionRow.state.in_([s.value for s in expect]))
        with self.session() as s, s.begin():
            done = s.execute(
                q.values(version=TransitionRow.version + 1, updated_at=now(), **fields)
            )
            return done.rowcount == 1

    @translated
    def confirm(
        self,
        tid: str,
        *,
        decision: Decision,
        allocation: Allocation,
        prediction_id: int | None,
        warnings: Sequence[dict[str, str]],
        risk_acknowledged: bool,
        resize_mode: str | None = None,
    ) -> Transition:
        """predicted -> launching with the final allocation, once. A second
        confirm finds the state moved on and gets a ConflictError."""
        with self.session() as s, s.begin():
            done = s.execute(
                update(TransitionRow)
                .where(
                    TransitionRow.id == tid,
                    TransitionRow.state == TransitionState.PREDICTED.value,
                )
                .values(
                    state=TransitionState.LAUNCHING.value,
                    version=TransitionRow.version + 1,
                    updated_at=now(),
                    final_vcpus=allocation.vcpus,
                    final_memory_mib=allocation.memory_mib,
                    final_iops=allocation.iops,
                    decision=decision.value,
                    resize_mode=resize_mode,
                )
            )
            if done.rowcount != 1:
                row = s.get(TransitionRow, tid)
                if row is None:
                    raise NotFoundError(f"no transition {tid!r}")
                raise ConflictError(
                    f"transition {tid} is {row.state}, not predicted: "
                    + (
                        f"it was already confirmed ({row.decision})"
                        if row.decision
                        else "there is no prediction to confirm yet"
                    )
                )
            s.add(
                ConfirmationRow(
                    transition_id=tid,
                    at=now(),
                    decision=decision.value,
                    prediction_id=prediction_id,
                    vcpus=allocation.vcpus,
                    memory_mib=allocation.memory_mib,
                    iops=allocation.iops,
                    risk_acknowledged=risk_acknowledged,
                    warnings={"shown": list(warnings)},
                )
            )
            msg = f"confirmed ({decision.value}): {alloc_text(allocation)}"
            if warnings:
                msg += "; warnings shown: " + "; ".join(w["message"] for w in warnings)
            insert_event(s, tid, "state", TransitionState.LAUNCHING, msg)
        return self.get(tid)

    @translated
    def confirmation(self, tid: str) -> StoredConfirmation | None:
        q = select(ConfirmationRow).where(ConfirmationRow.transition_id == tid)
        with self.session() as s:
            row = s.scalar(q)
        return to_confirmation(row) if row is not None else None

    @translated
    def count_by_state(self) -> dict[str, int]:
        q = select(TransitionRow.state, func.count()).group_by(TransitionRow.state)
        with self.session() as s:
            return {str(state): int(n) for state, n in s.execute(q)}

    # -- figures the controller plans with -----------------------------------------------
    @translated
    def recent_time_to_prediction(self, limit: int = 20) -> list[float]:
        """Seconds from shadow start to first prediction, newest first."""
        q = (
            select(TransitionRow.shadow_started_at, TransitionRow.predicted_at)
            .where(
                TransitionRow.shadow_started_at.is_not(None),
                TransitionRow.predicted_at.is_not(None),
            )
            .order_by(TransitionRow.predicted_at.desc())
            .limit(limit)
        )
        with self.session() as s:
            out = []
            for started, predicted in s.execute(q):
                a, b = aware(started), aware(predicted)
                if a and b and b > a:
                    out.append((b - a).total_seconds())
            return out


def count_unfinished_in(s: Session) -> int:
    q = select(func.count()).select_from(TransitionRow).where(UNFINISHED)
    return int(s.scalar(q) or 0)
