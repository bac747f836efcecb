"""Measurements of a shadow over time, from the host and from inside the guest.

Both views land in one series per shadow, each point tagged with its source,
so the host view (which does not trust the guest) and the guest's own view
can be compared phase by phase.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Source(enum.StrEnum):
    HOST = "host"
    GUEST = "guest"


@dataclass(frozen=True)
class UsagePoint:
    """Rates over one sampling interval ending at ``t`` (seconds since the shadow started)."""

    t: float
    source: Source
    phase_id: str | None
    busy_vcpus: float
    mem_used_mib: float | None
    read_iops: float
    write_iops: float
    read_bps: float
    write_bps: float
    # Only the guest sees these (the host view leaves them None).
    forks_ps: float | None = None  # processes and threads started per second
    faults_ps: float | None = None  # page faults per second
    # Only the host sees this: vCPUs' worth of time the shadow's vCPU threads
    # were runnable but queued behind other host work (None: not reported).
    wait_vcpus: float | None = None

    @property
    def iops(self) -> float:
        return self.read_iops + self.write_iops


@dataclass(frozen=True)
class StoredSample:
    """A ``UsagePoint`` as the store read it (``Store.samples``): its id (the
    order samples arrived in, which a stream pages by), whose it is and which
    profiling round of the shadow it came from."""

    id: int
    transition_id: str
    target: str  # "shadow" or "vm"
    run: int  # the shadow's profiling round; 0 for the launched VM
    point: UsagePoint


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values.

    NaN rather than 0 or None so that "no data" never reads as "no usage".
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class PhaseUsage:
    """The requirement-style summary of one phase from one view."""

    samples: int
    p95_busy_vcpus: float
    peak_mem_used_mib: float
    p95_iops: float
    p95_read_bps: float
    p95_write_bps: float

    def as_dict(self) -> dict[str, float | int | None]:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 3)

        return {
            "samples": self.samples,
            "p95_busy_vcpus": clean(self.p95_busy_vcpus),
            "peak_mem_used_mib": clean(self.peak_mem_used_mib),
            "p95_iops": clean(self.p95_iops),
            "p95_read_bps": clean(self.p95_read_bps),
            "p95_write_bps": clean(self.p95_write_bps),
        }


def summarize(points: Iterable[UsagePoint]) -> PhaseUsage:
    pts = list(points)
    mems = [p.mem_used_mib for p in pts if p.mem_used_mib is not None]
    return PhaseUsage(
        samples=len(pts),
        p95_busy_vcpus=percentile([p.busy_vcpus for p in pts], 95),
        peak_mem_used_mib=max(mems) if mems else math.nan,
        p95_iops=percentile([p.iops for p in pts], 95),
        p95_read_bps=percentile([p.read_bps for p in pts], 95),
        p95_write_bps=percentile([p.write_bps for p in pts], 95),
    )


def summarize_phase(series: Iterable[UsagePoint], phase_id: str, source: Source) -> PhaseUsage:
    return summarize(p for p in series if p.phase_id == phase_id and p.source is source)
