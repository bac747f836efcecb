"""Reading and writing transitions, events, samples, predictions and history.

Every state change is a compare-and-set: ``UPDATE ... WHERE id = ? AND state
IN (...)`` together with its event row, in one transaction. Whoever loses a
race (two confirms, a confirm and a cancel, two controllers) sees ``None`` or
a ``ConflictError`` and nothing half-written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError, NotFoundError
from vmshadow.domain.prediction import Prediction
from vmshadow.domain.samples import UsagePoint
from vmshadow.domain.transition import (
    TERMINAL,
    Decision,
    TransitionKind,
    TransitionState,
    check_edge,
)
from vmshadow.store.db import session_factory
from vmshadow.store.models import (
    ConfirmationRow,
    EventRow,
    HistoryRow,
    PredictionRow,
    SampleRow,
    TransitionRow,
)


def now() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def new_transition_id() -> str:
    return uuid.uuid4().hex[:12]


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def session(self) -> Session:
        return self._sessions()

    # -- transitions ---------------------------------------------------------------------
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
    ) -> TransitionRow:
        t = now()
        row = TransitionRow(
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
            previous_vcpus=previous.vcpus if previous else None,
            previous_memory_mib=previous.memory_mib if previous else None,
        )
        with self.session() as s, s.begin():
            active = s.scalar(
                select(TransitionRow.id).where(
                    TransitionRow.vm_name == vm_name,
                    TransitionRow.state.not_in([st.value for st in TERMINAL]),
                )
            )
            if active:
                raise ConflictError(
                    f"vm_name: transition {active} for {vm_name!r} is still in progress"
                )
            s.add(row)
            s.flush()
            what = f"{kind.value} of {vm_name} requested: {_alloc_text(requested)}"
            if scheduled_at:
                what += f", scheduled at {scheduled_at.isoformat()}"
            s.add(_event(row.id, "state", TransitionState.REQUESTED, what))
        return row

    def get(self, tid: str) -> TransitionRow:
        with self.session() as s:
            row = s.get(TransitionRow, tid)
        if row is None:
            raise NotFoundError(f"no transition {tid!r}")
        return row

    def get_many(self, tids: Iterable[str]) -> dict[str, TransitionRow]:
        """The transitions of these ids that exist, by id, in few queries."""
        wanted = sorted(set(tids))
        out: dict[str, TransitionRow] = {}
        with self.session() as s:
            for i in range(0, len(wanted), 500):  # under any SQLite's variable limit
                chunk = wanted[i : i + 500]
                for row in s.scalars(select(TransitionRow).where(TransitionRow.id.in_(chunk))):
                    out[row.id] = row
        return out

    def list_transitions(
        self, *, states: Iterable[TransitionState] | None = None, limit: int = 200
    ) -> list[TransitionRow]:
        q = select(TransitionRow).order_by(TransitionRow.created_at.desc()).limit(limit)
        if states is not None:
            q = q.where(TransitionRow.state.in_([s.value for s in states]))
        with self.session() as s:
            return list(s.scalars(q))

    def count_unfinished(self) -> int:
        q = (
            select(func.count())
            .select_from(TransitionRow)
            .where(TransitionRow.state.not_in([st.value for st in TERMINAL]))
        )
        with self.session() as s:
            return int(s.scalar(q) or 0)

    def unfinished(self) -> list[TransitionRow]:
        q = (
            select(TransitionRow)
            .where(TransitionRow.state.not_in([st.value for st in TERMINAL]))
            .order_by(TransitionRow.created_at)
        )
        with self.session() as s:
            return list(s.scalars(q))

    def advance(
        self,
        tid: str,
        to: TransitionState,
        message: str,
        *,
        expect: Iterable[TransitionState] | None = None,
        **fields: Any,
    ) -> TransitionRow | None:
        """Move to ``to`` if the transition is in one of ``expect`` (default: any
        state with a legal edge to ``to``); None when it was not (a lost race)."""
        with self.session() as s, s.begin():
            row = s.get(TransitionRow, tid)
            if row is None:
                raise NotFoundError(f"no transition {tid!r}")
            current = TransitionState(row.state)
            allowed = set(expect) if expect is not None else None
            if allowed is not None and current not in allowed:
                return None
            if current == to:
                return None
            check_edge(current, to)
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
            s.add(_event(tid, "state", to, message))
        return self.get(tid)

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
    ) -> TransitionRow:
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
            msg = f"confirmed ({decision.value}): {_alloc_text(allocation)}"
            if warnings:
                msg += "; warnings shown: " + "; ".join(w["message"] for w in warnings)
            s.add(_event(tid, "state", TransitionState.LAUNCHING, msg))
        return self.get(tid)

    def confirmation(self, tid: str) -> ConfirmationRow | None:
        with self.session() as s:
            return s.scalar(select(ConfirmationRow).where(ConfirmationRow.transition_id == tid))

    # -- events and samples --------------------------------------------------------------
    def add_event(
        self, tid: str, kind: str, message: str, state: TransitionState | None = None
    ) -> None:
        with self.session() as s, s.begin():
            s.add(_event(tid, kind, state, message))

    def events(self, tid: str, *, after: int = 0) -> list[EventRow]:
        q = (
            select(EventRow)
            .where(EventRow.transition_id == tid, EventRow.id > after)
            .order_by(EventRow.id)
        )
        with self.session() as s:
            return list(s.scalars(q))

    def add_samples(self, tid: str, target: str, run: int, points: Sequence[UsagePoint]) -> None:
        if not points:
            return
        with self.session() as s, s.begin():
            s.add_all(
                SampleRow(
                    transition_id=tid,
                    target=target,
                    run=run,
                    t=p.t,
                    source=p.source.value,
                    phase_id=p.phase_id,
                    busy_vcpus=p.busy_vcpus,
                    mem_used_mib=p.mem_used_mib,
                    read_iops=p.read_iops,
                    write_iops=p.write_iops,
                    read_bps=p.read_bps,
                    write_bps=p.write_bps,
                    forks_ps=p.forks_ps,
                    faults_ps=p.faults_ps,
                )
                for p in points
            )

    def samples(
        self, tid: str, *, after: int = 0, target: str | None = None, limit: int = 5000
    ) -> list[SampleRow]:
        q = (
            select(SampleRow)
            .where(SampleRow.transition_id == tid, SampleRow.id > after)
            .order_by(SampleRow.id)
            .limit(limit)
        )
        if target is not None:
            q = q.where(SampleRow.target == target)
        with self.session() as s:
            return list(s.scalars(q))

    # -- predictions ---------------------------------------------------------------------
    def add_prediction(self, tid: str, p: Prediction) -> int:
        row = PredictionRow(
            transition_id=tid,
            created_at=now(),
            method=p.method,
            label=p.label,
            history_size=p.history_size,
            margin=p.margin,
            rec_vcpus=p.recommended.vcpus,
            rec_memory_mib=p.recommended.memory_mib,
            rec_iops=p.recommended.iops,
            detail={"need": p.need.as_dict(), **p.detail},
        )
        with self.session() as s, s.begin():
            s.add(row)
            s.flush()
            return row.id

    def latest_prediction(self, tid: str) -> PredictionRow | None:
        q = (
            select(PredictionRow)
            .where(PredictionRow.transition_id == tid)
            .order_by(PredictionRow.id.desc())
            .limit(1)
        )
        with self.session() as s:
            return s.scalar(q)

    def prediction_count(self, tid: str) -> int:
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(PredictionRow)
                    .where(PredictionRow.transition_id == tid)
                )
                or 0
            )

    # -- history -------------------------------------------------------------------------
    def add_history(self, row: HistoryRow) -> None:
        with self.session() as s, s.begin():
            exists = (
                row.transition_id is not None
                and s.scalar(
                    select(HistoryRow.id).where(HistoryRow.transition_id == row.transition_id)
                )
                is not None
            )
            if not exists:  # a resumed controller may finish the same window twice
                s.add(row)

    def history(self, limit: int = 1000) -> list[HistoryRow]:
        with self.session() as s:
            return list(s.scalars(select(HistoryRow).order_by(HistoryRow.id.desc()).limit(limit)))

    def replace_history(self, source: str, rows: Iterable[HistoryRow]) -> tuple[int, int]:
        """Put ``rows`` in place of every record from ``source``, in one transaction,
        so that importing the same runs again never doubles them.
        Returns (removed, added)."""
        with self.session() as s, s.begin():
            removed = s.execute(delete(HistoryRow).where(HistoryRow.source == source)).rowcount
            added = 0
            for row in rows:
                row.source = source
                s.add(row)
                added += 1
        return int(removed or 0), added

    def all_history(self) -> list[HistoryRow]:
        """Every history record, oldest first (what a model trains on)."""
        with self.session() as s:
            return list(s.scalars(select(HistoryRow).order_by(HistoryRow.id)))

    def history_count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(HistoryRow)) or 0)

    # -- figures the controller plans with -----------------------------------------------
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

    # -- leases (one driver per transition) ---------------------------------------------
    def take_lease(self, tid: str, owner: str, seconds: float) -> bool:
        t = now()
        with self.session() as s, s.begin():
            done = s.execute(
                update(TransitionRow)
                .where(
                    TransitionRow.id == tid,
                    or_(
                        TransitionRow.lease_owner.is_(None),
                        TransitionRow.lease_owner == owner,
                        TransitionRow.lease_until < t,
                    ),
                )
                .values(lease_owner=owner, lease_until=t + timedelta(seconds=seconds))
            )
            return done.rowcount == 1

    def release_lease(self, tid: str, owner: str) -> None:
        with self.session() as s, s.begin():
            s.execute(
                update(TransitionRow)
                .where(TransitionRow.id == tid, TransitionRow.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )


def _event(tid: str, kind: str, state: TransitionState | None, message: str) -> EventRow:
    return EventRow(
        transition_id=tid,
        at=now(),
        kind=kind,
        state=state.value if state else None,
        message=message,
    )


def _alloc_text(a: Allocation) -> str:
    text = f"{a.vcpus} vCPU, {a.memory_mib} MiB"
    return text + (f", {a.iops} IOPS" if a.iops else "")


def row_allocation(
    vcpus: int | None, memory_mib: int | None, iops: int | None
) -> Allocation | None:
    if vcpus is None or memory_mib is None:
        return None
    return Allocation(vcpus=vcpus, memory_mib=memory_mib, iops=iops)
