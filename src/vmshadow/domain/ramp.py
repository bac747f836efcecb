"""From a ramp of loads measured on the shadow to what the full load needs.

Each ramp step runs a profile at one load (its phases are named ``s<step>-...``).
Per resource the engine fits measured usage = fixed + per-unit cost x load over
the steps the shadow sustained, and extrapolates to the user's load. This is
the *physical extrapolation*: it needs no history, and says so.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import Prediction, Requirement, requirement_of, round_allocation
from vmshadow.domain.samples import Source, UsagePoint

STEP_RE = re.compile(r"^s(\d+)-")
CPU_SATURATED = 0.9  # of the shadow's vCPUs: the step no longer tells the cost
IOPS_SUSTAINED = 0.8  # of the asked rate: below it the disk, not the load, set the pace


@dataclass(frozen=True)
class RampStep:
    step: int
    load: float
    measured: Requirement
    asked_iops: float
    cpu_saturated: bool
    iops_short: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "step": self.step,
            "load": self.load,
            "measured": self.measured.as_dict(),
            "cpu_saturated": self.cpu_saturated,
            "iops_short": self.iops_short,
        }


def ramp_saturated(points: Sequence[UsagePoint], phase_ids: Sequence[str], vcpus: int) -> bool:
    """A step's CPU phase kept the shadow's vCPUs busy: higher loads tell nothing more."""
    cpu_ids = {pid for pid in phase_ids if pid.endswith("-cpu")}
    step = [p for p in points if p.phase_id in cpu_ids]
    return bool(step) and cpu_cost(step) >= CPU_SATURATED * vcpus


def step_requirement(points: Sequence[UsagePoint]) -> Requirement:
    """Each resource from the phase that exercises it: the CPU phase's busy
    vCPUs, the memory phase's peak, the I/O phase's IOPS. (stress-ng's vm
    stressor and fio burn CPU of their own, which is not the application's.)"""

    def of(suffix: str) -> Requirement:
        return requirement_of([p for p in points if (p.phase_id or "").endswith(suffix)])

    return Requirement(
        vcpus=cpu_cost(points), memory_mib=of("-memory").memory_mib, iops=of("-io").iops
    )


def cpu_cost(points: Sequence[UsagePoint], source: Source = Source.HOST) -> float:
    """Mean busy vCPUs of the CPU phase (the host's view unless ``source`` says
    otherwise), without its first sample.

    A rate-limited stressor (stress-ng --cpu-load) works in bursts and spends
    its first second calibrating flat out (seen under TCG: 0.6-0.9 busy in the
    first sample at a 10 % load, then 0.03): the mean over the rest is the
    cost of the load; the P95 of a real application is the full VM's business,
    covered by the margin and, with history, by the model.
    """
    cpu = sorted(
        (p for p in points if (p.phase_id or "").endswith("-cpu") and p.source is source),
        key=lambda p: p.t,
    )
    values = [p.busy_vcpus for p in (cpu[1:] if len(cpu) > 2 else cpu)]
    return statistics.fmean(values) if values else 0.0


def step_of(phase_id: str | None) -> int | None:
    m = STEP_RE.match(phase_id or "")
    return int(m.group(1)) if m else None


def ramp_steps(
    points: Sequence[UsagePoint],
    loads: Sequence[float],
    iops_per_unit: float,
    shadow_vcpus: int,
) -> list[RampStep]:
    by_step: dict[int, list[UsagePoint]] = {}
    for p in points:
        s = step_of(p.phase_id)
        if s is not None:
            by_step.setdefault(s, []).append(p)
    steps = []
    for s in sorted(by_step):
        if s >= len(loads):
            continue
        req = step_requirement(by_step[s])
        asked = loads[s] * iops_per_unit
        steps.append(
            RampStep(
                step=s,
                load=loads[s],
                measured=req,
                asked_iops=asked,
                cpu_saturated=req.vcpus >= CPU_SATURATED * shadow_vcpus,
                iops_short=asked > 0 and req.iops < IOPS_SUSTAINED * asked,
            )
        )
    return steps


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(fixed, per_unit) by least squares; through the origin with one point."""
    if len(xs) >= 2 and len(set(xs)) >= 2:
        slope, intercept = statistics.linear_regression(xs, ys)
        if slope >= 0:
            return max(0.0, intercept), slope
    # One point, or a fit that says more load costs less: use the busiest step's
    # average cost per unit, which never under-states what load costs.
    i = max(range(len(xs)), key=lambda k: xs[k])
    return 0.0, ys[i] / xs[i] if xs[i] else 0.0


def extrapolate(steps: Sequence[RampStep], load: float) -> tuple[Requirement, dict[str, object]]:
    if not steps:
        raise ConfigError("profile", "the ramp measured no step: nothing to extrapolate from")
    fits: dict[str, tuple[float, float]] = {}
    need: dict[str, float] = {}
    for res in ("vcpus", "memory_mib", "iops"):
        usable = [
            s
            for s in steps
            if not (res == "vcpus" and s.cpu_saturated) and not (res == "iops" and s.iops_short)
        ]
        # With every step saturated, the first still bounds the cost from below.
        use = usable or list(steps[:1])
        xs = [s.load for s in use]
        ys = [float(getattr(s.measured, res)) for s in use]
        fixed, per_unit = _fit(xs, ys)
        fits[res] = (fixed, per_unit)
        need[res] = fixed + per_unit * load
    detail: dict[str, object] = {
        "ramp": [s.as_dict() for s in steps],
        "cost_per_unit": {r: round(f[1], 6) for r, f in fits.items()},
        "fixed": {r: round(f[0], 3) for r, f in fits.items()},
        "max_sustained_load": max(
            (s.load for s in steps if not (s.cpu_saturated or s.iops_short)), default=None
        ),
    }
    return Requirement(need["vcpus"], need["memory_mib"], need["iops"]), detail


@dataclass(frozen=True)
class RampPredictor:
    """Physical extrapolation from the shadow's ramp (no history model)."""

    loads_of: Callable[[str], tuple[list[float], float]]  # profile -> (ramp loads, iops/unit)
    shadow_vcpus: int = 1
    margin: float = 1.2

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
    ) -> Prediction:
        if load is None:
            raise ConfigError("load", f"profile {profile} needs an expected load to extrapolate to")
        loads, iops_per_unit = self.loads_of(profile)
        steps = ramp_steps(shadow_points, loads, iops_per_unit, self.shadow_vcpus)
        need, detail = extrapolate(steps, load)
        padded = Requirement(
            need.vcpus * self.margin, need.memory_mib * self.margin, need.iops * self.margin
        )
        top = max(s.load for s in steps)
        beyond = load / top if top else math.inf
        return Prediction(
            method="ramp-extrapolation",
            label=(
                f"physical extrapolation from {len(steps)} ramp steps (up to {top:g}, "
                f"target {load:g}: x{beyond:.1f} beyond the ramp) with margin x{self.margin:g}"
            ),
            history_size=0,
            margin=self.margin,
            need=need,
            recommended=round_allocation(padded),
            detail=detail,
        )
