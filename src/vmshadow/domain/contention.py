"""Whether the host starved a shadow while it measured.

A shadow measures what its workload costs only while its vCPUs get the CPU
they ask for. Two figures say when they did not:

- the vCPU threads' *wait* (libvirt's ``vcpu.<n>.delay``: runnable but queued
  behind other host work), per vCPU, from the host's points of the phase;
- the host's *steal* (its own hypervisor ran something else), from the host's
  CPU counters over the phase, where the host is this machine.

A rate-limited stressor that waits a tenth of its time no longer keeps its
schedule, and a thread whose host is stolen from is charged less CPU for the
same work: either biases the CPU figure by about as much as it is large. So a
phase is *contended* when either reaches ``limit`` (``controller.contention_max``,
0.1 by default: the same tenth the stability criterion lets an estimate move;
a bias larger than the noise we accept would decide the answer). On the quiet
2-CPU TCG host the benches run on, both stayed under 0.03.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vmshadow.domain.samples import Source, UsagePoint

CONTENTION_MAX = 0.1


@dataclass(frozen=True)
class Contention:
    """One phase's contention: each figure a fraction (None: not reported)."""

    wait: float | None = None  # vCPU run-queue wait per vCPU
    steal: float | None = None  # host CPU steal
    host_busy: float | None = None  # host CPUs busy (the load), for the record

    def contended(self, limit: float = CONTENTION_MAX) -> bool:
        return any(v is not None and v >= limit for v in (self.wait, self.steal))

    def text(self) -> str:
        parts = [
            f"{name} {v * 100:.0f} %"
            for name, v in (
                ("vCPU wait", self.wait),
                ("host steal", self.steal),
                ("host busy", self.host_busy),
            )
            if v is not None
        ]
        return ", ".join(parts) or "not reported"

    def as_dict(self) -> dict[str, float | None]:
        return {
            "wait": None if self.wait is None else round(self.wait, 3),
            "steal": None if self.steal is None else round(self.steal, 3),
            "host_busy": None if self.host_busy is None else round(self.host_busy, 3),
        }


def phase_wait(points: Iterable[UsagePoint], phase_id: str, vcpus: int) -> float | None:
    """Mean vCPU wait per vCPU over a phase's host points (None: not reported)."""
    waits = [
        p.wait_vcpus
        for p in points
        if p.phase_id == phase_id and p.source is Source.HOST and p.wait_vcpus is not None
    ]
    return statistics.fmean(waits) / max(1, vcpus) if waits else None


def waits_by_phase(points: Iterable[UsagePoint], vcpus: int) -> dict[str, float]:
    """Mean vCPU wait per vCPU of every phase that reported one."""
    by: dict[str, list[float]] = {}
    for p in points:
        if p.phase_id is not None and p.source is Source.HOST and p.wait_vcpus is not None:
            by.setdefault(p.phase_id, []).append(p.wait_vcpus)
    return {pid: statistics.fmean(w) / max(1, vcpus) for pid, w in by.items()}


def contention_detail(
    points: Sequence[UsagePoint], vcpus: int, limit: float = CONTENTION_MAX
) -> dict[str, object] | None:
    """What a prediction says about contention: the worst phase's wait, and the
    phases at or over ``limit`` (None when no point reported a wait)."""
    waits = waits_by_phase(points, vcpus)
    if not waits:
        return None
    worst = max(waits, key=lambda k: waits[k])
    return {
        "limit": limit,
        "max_wait": round(waits[worst], 3),
        "max_wait_phase": worst,
        "contended_phases": sorted(pid for pid, w in waits.items() if w >= limit),
    }


def contended_text(detail: Mapping[str, object]) -> str | None:
    """A line for the label when phases were contended; None otherwise."""
    phases = detail.get("contended_phases")
    if not isinstance(phases, list) or not phases:
        return None
    return (
        f"the shadow waited for the host's CPU in {', '.join(map(str, phases))} "
        f"(up to {float(str(detail.get('max_wait', 0))) * 100:.0f} % of its time): "
        "its CPU figures may under-state the need"
    )


__all__ = ["CONTENTION_MAX", "Contention", "contended_text", "contention_detail", "phase_wait"]
