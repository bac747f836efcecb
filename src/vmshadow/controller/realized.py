"""What a launched VM really used so far, next to what was predicted for it.

The controller stores the launched VM's host-side samples while it observes
it (target ``vm``); the same definition of a requirement as the prediction's
(P95 busy vCPUs, peak memory, P95 IOPS) makes the two comparable while the
observation is still running, not only once the history record is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vmshadow.domain.prediction import Requirement, requirement_of
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.store.models import SampleRow
from vmshadow.store.repository import Store

# Ten minutes of once-a-second samples is 600; a week-long window would still fit.
MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class Realized:
    requirement: Requirement
    samples: int
    seconds: float  # span of the observation so far


def points_of(rows: Iterable[SampleRow]) -> list[UsagePoint]:
    return [
        UsagePoint(
            t=s.t,
            source=Source(s.source),
            phase_id=s.phase_id,
            busy_vcpus=s.busy_vcpus,
            mem_used_mib=s.mem_used_mib,
            read_iops=s.read_iops,
            write_iops=s.write_iops,
            read_bps=s.read_bps,
            write_bps=s.write_bps,
            forks_ps=s.forks_ps,
            faults_ps=s.faults_ps,
        )
        for s in rows
    ]


def realized(store: Store, tid: str) -> Realized | None:
    """The launched VM's requirement over its samples so far; None before any."""
    points = points_of(store.samples(tid, target="vm", limit=MAX_SAMPLES))
    if not points:
        return None
    span = max(p.t for p in points) - min(p.t for p in points)
    return Realized(requirement_of(points), len(points), span)
