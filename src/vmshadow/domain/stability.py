"""When a phase has measured enough: its estimate is stable.

A phase's ``duration_s`` is its *maximum*. Between ``min_s`` and that, the
phase ends as soon as the figure the ramp fit reads from it (``domain.ramp``:
``step_requirement``) has settled:

- a CPU phase (``-cpu``): the mean busy vCPUs of the host's view without the
  first sample (``cpu_cost``); stable when the 95 % confidence half-width of
  that mean is within ``within`` of it (of ``CPU_FLOOR`` at least: a relative
  width around a near-zero mean never closes, and 0.05 vCPU is far below the
  whole-vCPU rounding);
- a memory phase (``-memory``): the guest's peak memory used; stable when the
  last two samples moved the peak by less than ``within`` of it and the guest
  still holds it (a working set still being touched keeps raising the peak),
  or, sooner, once the guest's memory rose by ``1 - within`` of what the
  stressor asked for (``Held``) and holds: a stressor touches no more than it
  asked, so the peak has nowhere left to go, and no minimum applies (under
  TCG the guest holds a 200 MiB working set at its first sample, 1 s in; the
  2 s minimum kept the phase 1-2 s longer for nothing);
- an I/O phase (``-io``): the P95 IOPS of the host's view; stable when the
  mean rate's half-width is within ``within`` of it (of ``IOPS_FLOOR`` at
  least: a few IOPS, under the allocation's 10 IOPS rounding) and the last two
  samples moved the P95 by less than that.

An application phase (``-app``) runs its whole length: the agent ignores a
stop for it, so there is nothing to decide. Pure: no I/O, no clock; the
caller gives the points and how long the phase has run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from vmshadow.domain.samples import Source, UsagePoint, percentile

CPU_FLOOR = 0.05  # vCPU
# Operations/s. fio's Poisson arrivals at a rate r vary by sqrt(r) from one
# 1 s sample to the next, so at web's 10 IOPS a half-width of 10 % of the rate
# needs ~40 samples and the phase always ran its maximum. Below this floor the
# limit is within x 50 = 5 IOPS at the default 0.1: half the 10 IOPS step the
# allocation is rounded to (``round_allocation``), which no finer figure changes.
IOPS_FLOOR = 50.0
WINDOW = 2  # samples: "the last window" of the peak and P95 criteria

# Two-sided 95 % Student t quantiles by degrees of freedom (scipy is not a
# dependency of the domain); beyond the table the normal's 1.96 is close enough.
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


@dataclass(frozen=True)
class StopRule:
    """``min_s`` before any stop; ``within``: the fraction an estimate may still move."""

    min_s: float = 2.0
    within: float = 0.1


@dataclass(frozen=True)
class Held:
    """A memory phase's stressor: ``asked_mib`` in all, over the guest's
    ``before_mib`` (its last sample before the phase)."""

    before_mib: float
    asked_mib: float


@dataclass(frozen=True)
class Verdict:
    stable: bool
    estimate: float | None  # the figure the verdict is about, in its unit
    why: str  # one line a user can read
    final: bool = False  # the figure cannot move any more: no minimum to wait for


def t95(df: int) -> float:
    return _T95.get(df, 1.96) if df >= 1 else math.inf


def half_width(values: Sequence[float]) -> float:
    """The 95 % confidence half-width of the mean of ``values`` (inf below 2 values)."""
    if len(values) < 2:
        return math.inf
    return t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def _phase(points: Sequence[UsagePoint], phase_id: str, source: Source) -> list[UsagePoint]:
    return sorted((p for p in points if p.phase_id == phase_id and p.source is source), key=_t)


def _t(p: UsagePoint) -> float:
    return p.t


def _mean_stable(values: Sequence[float], floor: float, within: float, unit: str) -> Verdict:
    # The first sample is dropped as ``cpu_cost`` drops it: stress-ng calibrates
    # flat out in its first second, which is no part of the load's cost.
    kept = list(values[1:])
    if len(kept) < 2:
        return Verdict(False, None, f"{len(kept)} usable samples")
    mean = statistics.fmean(kept)
    hw = half_width(kept)
    limit = within * max(mean, floor)
    if hw <= limit:
        return Verdict(True, mean, f"mean {mean:.3g} {unit} +- {hw:.2g} over {len(kept)} samples")
    return Verdict(False, mean, f"mean {mean:.3g} {unit} +- {hw:.2g} (> {limit:.2g})")


def cpu_verdict(points: Sequence[UsagePoint], phase_id: str, within: float) -> Verdict:
    values = [p.busy_vcpus for p in _phase(points, phase_id, Source.HOST)]
    return _mean_stable(values, CPU_FLOOR, within, "vCPU")


def memory_verdict(
    points: Sequence[UsagePoint], phase_id: str, within: float, held: Held | None = None
) -> Verdict:
    mems = [
        p.mem_used_mib for p in _phase(points, phase_id, Source.GUEST) if p.mem_used_mib is not None
    ]
    if held is not None and held.asked_mib > 0 and mems:
        peak, rose = max(mems), max(mems) - held.before_mib
        if rose >= (1 - within) * held.asked_mib and mems[-1] >= (1 - within) * peak:
            return Verdict(
                True,
                peak,
                f"peak {peak:.0f} MiB holds {rose:.0f} of the {held.asked_mib:.0f} MiB asked",
                final=True,
            )
    if len(mems) <= WINDOW:
        return Verdict(False, None, f"{len(mems)} guest samples")
    peak, before = max(mems), max(mems[:-WINDOW])
    moved = peak - before
    if moved > within * peak:
        return Verdict(False, peak, f"peak still rising ({before:.0f} -> {peak:.0f} MiB)")
    if mems[-1] < (1 - within) * peak:
        return Verdict(False, peak, f"memory fell to {mems[-1]:.0f} of a {peak:.0f} MiB peak")
    return Verdict(True, peak, f"peak {peak:.0f} MiB held over {WINDOW} samples")


def io_verdict(points: Sequence[UsagePoint], phase_id: str, within: float) -> Verdict:
    values = [p.iops for p in _phase(points, phase_id, Source.HOST)]
    rate = _mean_stable(values, IOPS_FLOOR, within, "IOPS")
    if not rate.stable:
        return rate
    kept = values[1:]
    if len(kept) <= WINDOW:
        return Verdict(False, None, f"{len(kept)} usable samples")
    p95, before = percentile(kept, 95), percentile(kept[:-WINDOW], 95)
    if abs(p95 - before) > within * max(p95, IOPS_FLOOR):
        return Verdict(False, p95, f"P95 still moving ({before:.0f} -> {p95:.0f} IOPS)")
    return Verdict(True, p95, f"P95 {p95:.0f} IOPS, {rate.why}")


def verdict(
    points: Sequence[UsagePoint],
    phase_id: str,
    elapsed_s: float,
    rule: StopRule,
    *,
    held: Held | None = None,
) -> Verdict:
    """Whether phase ``phase_id`` may end now, ``elapsed_s`` after it started
    (``held``: what a memory phase's stressor asked for, when known)."""
    if phase_id.endswith("-cpu"):
        v = cpu_verdict(points, phase_id, rule.within)
    elif phase_id.endswith("-memory"):
        v = memory_verdict(points, phase_id, rule.within, held)
    elif phase_id.endswith("-io"):
        v = io_verdict(points, phase_id, rule.within)
    else:
        # Smoke's and idle phases, and an application's: no estimate of a ramp
        # step to settle, so they run their length.
        return Verdict(False, None, "runs its length")
    if v.stable and not v.final and elapsed_s < rule.min_s:
        return Verdict(False, v.estimate, f"stable, before the {rule.min_s:g} s minimum")
    return v


__all__ = ["Held", "StopRule", "Verdict", "cpu_verdict", "half_width", "io_verdict", "verdict"]
