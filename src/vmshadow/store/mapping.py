"""Rows to domain objects: the one place a transition row becomes a
``domain.transition.Transition``, an event a ``StoredEvent``, a confirmation a
``StoredConfirmation``, a prediction row a ``domain.prediction.StoredPrediction``,
a sample row a ``domain.samples.StoredSample`` and a history row a
``domain.history.StoredHistory``; and history records back into rows.

Every read of the store goes through here, so no ORM row leaves ``store/``:
callers cannot lazy-load from a closed session, nor mistake a stale row for
a handle to write through (writes go by id, compare-and-set).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from vmshadow.domain.history import (
    HistoryRecord,
    LaunchRecord,
    ShadowRun,
    Size,
    StoredHistory,
    json_float,
)
from vmshadow.domain.prediction import RESOURCES, Requirement, StoredPrediction
from vmshadow.domain.samples import Source, StoredSample, UsagePoint
from vmshadow.domain.transition import (
    Decision,
    StoredConfirmation,
    StoredEvent,
    Transition,
    TransitionKind,
    TransitionState,
)
from vmshadow.store.base import aware
from vmshadow.store.models import (
    ConfirmationRow,
    EventRow,
    HistoryRow,
    PredictionRow,
    SampleRow,
    TransitionRow,
)


def _at(dt: datetime) -> datetime:
    # aware() keeps None as None; these columns are never NULL.
    got = aware(dt)
    assert got is not None
    return got


def to_transition(row: TransitionRow | Row[Any]) -> Transition:
    """From a mapped row or a select of the table's columns (same names)."""
    return Transition(
        id=row.id,
        kind=TransitionKind(row.kind),
        vm_name=row.vm_name,
        profile=row.profile,
        image=row.image,
        load=row.load,
        req_vcpus=row.req_vcpus,
        req_memory_mib=row.req_memory_mib,
        req_iops=row.req_iops,
        scheduled_at=aware(row.scheduled_at),
        fast_launch=bool(row.fast_launch),
        state=TransitionState(row.state),
        reason=row.reason,
        created_at=_at(row.created_at),
        updated_at=_at(row.updated_at),
        version=row.version,
        vm_defined=bool(row.vm_defined),
        vm_started=bool(row.vm_started),
        previous_vcpus=row.previous_vcpus,
        previous_memory_mib=row.previous_memory_mib,
        final_vcpus=row.final_vcpus,
        final_memory_mib=row.final_memory_mib,
        final_iops=row.final_iops,
        decision=Decision(row.decision) if row.decision else None,
        resize_mode=row.resize_mode,
        shadow_started_at=aware(row.shadow_started_at),
        predicted_at=aware(row.predicted_at),
        running_since=aware(row.running_since),
        lease_owner=row.lease_owner,
        lease_until=aware(row.lease_until),
        shadow_host=row.shadow_host,
        shadow_live=bool(row.shadow_live),
        vm_host=row.vm_host,
        placement=row.placement,
        guest=row.guest,
        policy=row.policy,
        policy_verdict=row.policy_verdict,
        origin=row.origin,
        domain_uuid=row.domain_uuid,
        adopted=row.adopted,
        detect_key=row.detect_key,
    )


def to_prediction(row: PredictionRow) -> StoredPrediction:
    return StoredPrediction(
        id=row.id,
        transition_id=row.transition_id,
        created_at=_at(row.created_at),
        method=row.method,
        label=row.label,
        history_size=row.history_size,
        margin=row.margin,
        rec_vcpus=row.rec_vcpus,
        rec_memory_mib=row.rec_memory_mib,
        rec_iops=row.rec_iops,
        detail=row.detail,
    )


def to_sample(row: SampleRow) -> StoredSample:
    point = UsagePoint(
        t=row.t,
        source=Source(row.source),
        phase_id=row.phase_id,
        busy_vcpus=row.busy_vcpus,
        mem_used_mib=row.mem_used_mib,
        read_iops=row.read_iops,
        write_iops=row.write_iops,
        read_bps=row.read_bps,
        write_bps=row.write_bps,
        forks_ps=row.forks_ps,
        faults_ps=row.faults_ps,
    )
    return StoredSample(row.id, row.transition_id, row.target, row.run, point)


def to_event(row: EventRow) -> StoredEvent:
    return StoredEvent(row.id, row.transition_id, _at(row.at), row.kind, row.state, row.message)


def to_confirmation(row: ConfirmationRow) -> StoredConfirmation:
    return StoredConfirmation(
        id=row.id,
        transition_id=row.transition_id,
        at=_at(row.at),
        decision=Decision(row.decision),
        prediction_id=row.prediction_id,
        vcpus=row.vcpus,
        memory_mib=row.memory_mib,
        iops=row.iops,
        risk_acknowledged=bool(row.risk_acknowledged),
        warnings=list(row.warnings.get("shown", [])),
    )


# -- history: records <-> rows ----------------------------------------------------------
def to_history(row: HistoryRow) -> StoredHistory:
    return StoredHistory(
        id=row.id,
        transition_id=row.transition_id,
        created_at=_at(row.created_at),
        source=row.source,
        job=row.job,
        profile=row.profile,
        load=row.load,
        shadow=row.shadow,
        target=row.target,
        observed=row.observed,
        observed_s=row.observed_s,
        record=history_record(row),
    )


def history_row(record: HistoryRecord, source: str, created_at: datetime) -> HistoryRow:
    """An imported record as a row of ``source``."""
    return HistoryRow(
        transition_id=None,
        created_at=created_at,
        source=source,
        job=record.job,
        profile=None,
        load=None,
        shadow={
            "vcpus": record.shadow.size.vcpus,
            "memory_mib": record.shadow.size.memory_mib,
            "type": record.shadow.size.type,
            "need": record.shadow.need.as_dict(),
            "features": {k: json_float(v) for k, v in record.shadow.features.items()},
            "run": record.shadow.run,
            "input": record.input,
            "interval_s": json_float(record.shadow.interval_s),
        },
        target={
            "vcpus": record.target.vcpus,
            "memory_mib": record.target.memory_mib,
            "type": record.target.type,
            "family": record.target.family,
            "iops": record.target.iops,
            "run": record.target_run,
        },
        observed=record.observed.as_dict(),
        observed_s=record.observed_s,
    )


def launch_row(launch: LaunchRecord, created_at: datetime) -> HistoryRow:
    return HistoryRow(
        transition_id=launch.transition_id,
        created_at=created_at,
        source="vmshadow",
        job=launch.job,
        profile=launch.profile,
        load=launch.load,
        shadow=launch.shadow,
        target=launch.target.as_dict() if launch.target else {},
        observed=launch.observed.as_dict(),
        observed_s=launch.observed_s,
    )


def _float_or_nan(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def _requirement(d: Any) -> Requirement | None:
    if not isinstance(d, dict):
        return None
    try:
        return Requirement(*(float(d[r]) for r in RESOURCES))
    except (KeyError, TypeError, ValueError):
        return None


def history_record(row: HistoryRow) -> HistoryRecord | None:
    """A stored row as a record, or None when it lacks what a model learns from
    (the shadow's measured need, the target's size or the observed requirement)."""
    sh, tg = row.shadow or {}, row.target or {}
    need, observed = _requirement(sh.get("need")), _requirement(row.observed)
    try:
        shadow_size = Size(int(sh["vcpus"]), int(sh["memory_mib"]), sh.get("type"))
        iops = tg.get("iops")
        target = Size(
            int(tg["vcpus"]),
            int(tg["memory_mib"]),
            tg.get("type"),
            tg.get("family"),
            None if iops is None else float(iops),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if need is None or observed is None:
        return None
    feats = sh.get("features") or {}
    extrapolated = _requirement(sh.get("extrapolated"))
    if extrapolated is None and row.load is not None and sh.get("method") == "ramp-extrapolation":
        # Recorded before the extrapolation had a key of its own: the ramp
        # engine's need was the extrapolation (bar the idle-OS floor).
        extrapolated = _requirement(sh.get("predicted"))
    return HistoryRecord(
        source=row.source,
        job=row.job,
        shadow=ShadowRun(
            size=shadow_size,
            need=need,
            features={k: math.nan if v is None else float(v) for k, v in feats.items()},
            run=sh.get("run"),
            interval_s=_float_or_nan(sh.get("interval_s")),
        ),
        target=target,
        observed=observed,
        observed_s=row.observed_s,
        input=sh.get("input"),
        target_run=tg.get("run"),
        load=row.load,
        extrapolated=extrapolated if row.load is not None else None,
        beyond_ramp=_float_or_nan(sh.get("beyond_ramp")),
    )
