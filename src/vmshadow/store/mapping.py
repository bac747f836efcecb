"""Rows to domain objects: the one place a transition row becomes a
``domain.transition.Transition``, a prediction row a
``domain.prediction.StoredPrediction`` and a sample row a
``domain.samples.StoredSample``.

Every read of the store goes through here, so no ORM row leaves ``store/``:
callers cannot lazy-load from a closed session, nor mistake a stale row for
a handle to write through (writes go by id, compare-and-set).
"""

from __future__ import annotations

from datetime import datetime

from vmshadow.domain.prediction import StoredPrediction
from vmshadow.domain.samples import Source, StoredSample, UsagePoint
from vmshadow.domain.transition import Decision, Transition, TransitionKind, TransitionState
from vmshadow.store.base import aware
from vmshadow.store.models import PredictionRow, SampleRow, TransitionRow


def _at(dt: datetime) -> datetime:
    # aware() keeps None as None; these columns are never NULL.
    got = aware(dt)
    assert got is not None
    return got


def to_transition(row: TransitionRow) -> Transition:
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
