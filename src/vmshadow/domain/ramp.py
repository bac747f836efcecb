"""From a ramp of loads measured on the shadow to what the full load needs.

Each ramp step runs a profile at one load (its phases are named ``s<step>-...``).
Per resource the engine fits measured usage = fixed + per-unit cost x load over
the steps the shadow sustained, and extrapolates to the user's load. This is
the *physical extrapolation*: it needs no history, and says so. The engine
that answers with it is ``predict.ramp.RampPredictor``; this module holds the
pure steps and fit.

A profile that runs the application itself (``app:``) has one phase per step,
``s<step>-app``, which gives every resource; its phase result says the rate
the application *achieved* (``AppRun``), and the fit uses that load instead
of the asked one: a step that fell short of its rate used what it used for
fewer units, and fitted at the asked load it would pass for a cheap one.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import (
    RESOURCES,
    Requirement,
    requirement_of,
)
from vmshadow.domain.samples import Source, UsagePoint

STEP_RE = re.compile(r"^s(\d+)-")
CPU_SATURATED = 0.9  # of the shadow's vCPUs: the step no longer tells the cost
IOPS_SUSTAINED = 0.8  # of the asked rate: below it the disk, not the load, set the pace
LOAD_SUSTAINED = 0.8  # of the asked load: below it an application step fell short
APP_SUFFIX = "-app"  # the phase of a step that runs the application itself
CPU_SUFFIXES = ("-cpu", APP_SUFFIX)  # the phases a step's CPU cost is read from
_PHASE_OF = {"vcpus": "-cpu", "memory_mib": "-memory", "iops": "-io"}


@dataclass(frozen=True)
class AppRun:
    """What the application achieved at each step (from its phase results)."""

    command: str
    achieved: Mapping[int, float] = field(default_factory=dict)  # step -> units/s

    def as_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "achieved": [round(self.achieved[s], 6) for s in sorted(self.achieved)],
        }


def app_run(results: Iterable[Mapping[str, object]]) -> AppRun | None:
    """The application's achieved rates from phase results (``PhaseRun.result``:
    ``phase_id``, ``kind``, ``metrics``); None when no app phase ran."""
    command = ""
    runs: dict[int, list[float]] = {}
    for result in results:
        metrics = result.get("metrics")
        step = step_of(str(result.get("phase_id") or ""))
        if result.get("kind") != "app" or step is None or not isinstance(metrics, dict):
            continue
        value = metrics.get("achieved_per_s")
        if isinstance(value, int | float) and not isinstance(value, bool):
            runs.setdefault(step, []).append(float(value))
            command = str(metrics.get("command") or command)
    # Refining rounds run each step again and their samples pool by phase id:
    # the achieved load they are fitted against is the rounds' mean likewise.
    achieved = {s: statistics.fmean(v) for s, v in runs.items()}
    return AppRun(command, achieved) if achieved else None


@dataclass(frozen=True)
class RampStep:
    step: int
    load: float  # what the step ran at: the achieved load of an application step
    measured: Requirement
    asked_iops: float
    cpu_saturated: bool
    iops_short: bool
    asked_load: float | None = None  # an application step's nominal load
    resources: frozenset[str] = frozenset(RESOURCES)  # what its phases measured

    @property
    def load_short(self) -> bool:
        """An application step that did not reach its rate."""
        return self.asked_load is not None and self.load < LOAD_SUSTAINED * self.asked_load

    def as_dict(self) -> dict[str, object]:
        measured = {r: v for r, v in self.measured.as_dict().items() if r in self.resources}
        out: dict[str, object] = {
            "step": self.step,
            "load": self.load,
            "measured": measured,
            "cpu_saturated": self.cpu_saturated,
            "iops_short": self.iops_short,
        }
        if self.asked_load is not None:
            out["asked_load"] = self.asked_load
            out["load_short"] = self.load_short
        return out


def ramp_saturated(points: Sequence[UsagePoint], phase_ids: Sequence[str], vcpus: int) -> bool:
    """A step's CPU (or application) phase kept the shadow's vCPUs busy: higher
    loads tell nothing more."""
    cpu_ids = {pid for pid in phase_ids if pid.endswith(CPU_SUFFIXES)}
    step = [p for p in points if p.phase_id in cpu_ids]
    return bool(step) and cpu_cost(step) >= CPU_SATURATED * vcpus


def step_requirement(points: Sequence[UsagePoint]) -> Requirement:
    """Each resource from the phase that exercises it: the CPU phase's busy
    vCPUs, the memory phase's peak, the I/O phase's IOPS. (stress-ng's vm
    stressor and fio burn CPU of their own, which is not the application's.)
    A step that ran the application itself has every resource from that phase.
    A phase the step did not run gives 0 (``measured_resources`` says which)."""

    def of(suffix: str) -> Requirement:
        return requirement_of([p for p in points if (p.phase_id or "").endswith(suffix)])

    if any((p.phase_id or "").endswith(APP_SUFFIX) for p in points):
        app = of(APP_SUFFIX)
        return Requirement(vcpus=cpu_cost(points), memory_mib=app.memory_mib, iops=app.iops)
    return Requirement(
        vcpus=cpu_cost(points), memory_mib=of("-memory").memory_mib, iops=of("-io").iops
    )


def measured_resources(points: Iterable[UsagePoint]) -> frozenset[str]:
    """The resources a step's phases measured: a planned step may run only some
    (``workloads.catalog.ramp_plan``), and a phase it did not run is no zero."""
    ids = {p.phase_id or "" for p in points}
    if any(i.endswith(APP_SUFFIX) for i in ids):
        return frozenset(RESOURCES)
    have = {res for res, suffix in _PHASE_OF.items() if any(i.endswith(suffix) for i in ids)}
    return frozenset(have)


def expected_step(ramp: Sequence[float]) -> int:
    """The step number of a step run at the expected load itself, when that load
    is none of the ramp's: one past the ramp (``predict.ramp.RampPredictor``
    maps it back)."""
    return len(ramp)


def cpu_cost(points: Sequence[UsagePoint], source: Source = Source.HOST) -> float:
    """Mean busy vCPUs of the CPU phase (or the application's; the host's view
    unless ``source`` says otherwise), without its first sample.

    A rate-limited stressor (stress-ng --cpu-load) works in bursts and spends
    its first second calibrating flat out (seen under TCG: 0.6-0.9 busy in the
    first sample at a 10 % load, then 0.03): the mean over the rest is the
    cost of the load; the P95 of a real application is the full VM's business,
    covered by the margin and, with history, by the model.
    """
    cpu = sorted(
        (p for p in points if (p.phase_id or "").endswith(CPU_SUFFIXES) and p.source is source),
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
    achieved: Mapping[int, float] | None = None,
) -> list[RampStep]:
    """One ``RampStep`` per measured step; ``achieved`` (step -> units/s) replaces
    the nominal load of the steps an application ran."""
    got = achieved or {}
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
        # An application's I/O is whatever it does: there is no asked rate to miss.
        asked = 0.0 if s in got else loads[s] * iops_per_unit
        steps.append(
            RampStep(
                step=s,
                load=got.get(s, loads[s]),
                measured=req,
                asked_iops=asked,
                cpu_saturated=req.vcpus >= CPU_SATURATED * shadow_vcpus,
                iops_short="iops" in measured_resources(by_step[s])
                and asked > 0
                and req.iops < IOPS_SUSTAINED * asked,
                asked_load=loads[s] if s in got else None,
                resources=measured_resources(by_step[s]),
            )
        )
    return steps


def fit_regressed(xs: Sequence[float], ys: Sequence[float]) -> bool:
    """Whether ``fit_line`` fits a line through the points (else it takes the
    busiest step's cost per unit): the interval of the extrapolation
    (``predict.ramp``) propagates each step's error by the same rule."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return False
    return statistics.linear_regression(xs, ys).slope >= 0


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(fixed, per_unit) by least squares; through the origin with one point."""
    if fit_regressed(xs, ys):
        slope, intercept = statistics.linear_regression(xs, ys)
        if slope >= 0:
            return max(0.0, intercept), slope
    # One point, or a fit that says more load costs less: use the busiest step's
    # average cost per unit, which never under-states what load costs.
    i = max(range(len(xs)), key=lambda k: xs[k])
    return 0.0, ys[i] / xs[i] if xs[i] else 0.0


def fitted_steps(steps: Sequence[RampStep], res: str) -> list[RampStep]:
    """The steps ``res``'s cost is fitted on: those that measured it and did
    not saturate the shadow's CPU (for vCPUs) or fall short of the asked rate
    (for IOPS)."""
    measured = [s for s in steps if res in s.resources]
    usable = [
        s
        for s in measured
        if not (res == "vcpus" and s.cpu_saturated) and not (res == "iops" and s.iops_short)
    ]
    # With every step saturated, the first still bounds the cost from below.
    return usable or list((measured or list(steps))[:1])


def extrapolate(steps: Sequence[RampStep], load: float) -> tuple[Requirement, dict[str, object]]:
    if not steps:
        raise ConfigError("profile", "the ramp measured no step: nothing to extrapolate from")
    fits: dict[str, tuple[float, float]] = {}
    need: dict[str, float] = {}
    for res in ("vcpus", "memory_mib", "iops"):
        use = fitted_steps(steps, res)
        xs = [s.load for s in use]
        ys = [float(getattr(s.measured, res)) for s in use]
        fixed, per_unit = fit_line(xs, ys)
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
