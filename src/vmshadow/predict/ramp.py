"""The ramp's physical extrapolation as an engine (``RampPredictor``), and the
engine for a profile run with no history model (``ProfilePredictor``: smoke's
measured usage, or a workload profile's ramp).

The steps, the fit and the extrapolation are the domain's (``domain.ramp``);
this module adds what an answer says about itself: its label, its interval
and the figures the learned correction and its history need
(``detail["extrapolated"]``, ``detail["beyond_ramp"]``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.contention import contended_text, contention_detail
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import RESOURCES, Prediction, Requirement, round_allocation
from vmshadow.domain.ramp import (
    APP_SUFFIX,
    CPU_SUFFIXES,
    AppRun,
    RampStep,
    extrapolate,
    fit_regressed,
    fitted_steps,
    ramp_steps,
    step_of,
)
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.stability import WINDOW, StopRule
from vmshadow.predict.intervals import interval_detail, mean_half_width, symmetric, t90
from vmshadow.predict.measured import ShadowMeasuredPredictor
from vmshadow.workloads.catalog import SMOKE
from vmshadow.workloads.profiles import load_profile

ENGINE = "ramp-extrapolation"
# What a memory phase that ended held may still lack, of its peak (the held
# rule's tolerance at its default: the guest holds ``1 - within`` of the ask).
HELD_LEFT = StopRule().within
RAMP_BASIS = (
    "each step's measurement error (90 % half-width of its CPU and I/O series' mean, "
    "its memory peak's last move) carried through the fit to the load, plus the fit's "
    "residual scatter with three steps or more; nominal: it cannot see the error of "
    "extrapolating beyond the ramp, which only history shows"
)


def _step_error(points: Sequence[UsagePoint], res: str) -> float:
    """How far one step's figure for ``res`` could be off (90 %), read the way
    ``domain.stability`` judges a phase settled: a mean's half-width for CPU (the
    samples ``cpu_cost`` averages) and I/O, the last move of the peak for memory."""
    app = any((p.phase_id or "").endswith(APP_SUFFIX) for p in points)

    def phase(suffixes: tuple[str, ...]) -> list[UsagePoint]:
        chosen = (APP_SUFFIX,) if app else suffixes
        return sorted((p for p in points if (p.phase_id or "").endswith(chosen)), key=lambda p: p.t)

    if res == "vcpus":
        cpu = [p for p in phase(CPU_SUFFIXES) if p.source is Source.HOST]
        return mean_half_width([p.busy_vcpus for p in (cpu[1:] if len(cpu) > 2 else cpu)])
    if res == "iops":
        return mean_half_width([p.iops for p in phase(("-io",)) if p.source is Source.HOST])
    mem_pts = phase(("-memory",))
    mems = [p.mem_used_mib for p in mem_pts if p.source is Source.GUEST and p.mem_used_mib]
    mems = mems or [p.mem_used_mib for p in mem_pts if p.mem_used_mib is not None]
    values = [float(m) for m in mems if m is not None]
    if not values:
        return 0.0
    if len(values) <= WINDOW:
        # Too few samples for the peak rule: the phase ended because the guest
        # held 90 % of what its stressor asked (``domain.stability``), so at
        # most about a tenth of the peak was still to come.
        return max(max(values) - min(values), HELD_LEFT * max(values))
    return max(values) - max(values[:-WINDOW])


def ramp_half_widths(
    points: Sequence[UsagePoint],
    steps: Sequence[RampStep],
    load: float,
    known_slope: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per resource the 90 % half-width of the extrapolated need at ``load``.

    The extrapolation is a linear combination of the fitted steps' figures
    (least squares: weights ``1/n + (L - mean x)(x_s - mean x)/Sxx``; the busiest
    step's cost per unit: ``L / x`` on it alone), so each step's own error is
    carried to the load by its weight. With three steps or more the fit's
    residuals also say how far the steps stray from a line; their prediction
    half-width is added in quadrature."""
    by_step: dict[int, list[UsagePoint]] = {}
    for p in points:
        s = step_of(p.phase_id)
        if s is not None:
            by_step.setdefault(s, []).append(p)
    out = {}
    for res in RESOURCES:
        use = fitted_steps(steps, res)
        xs = [s.load for s in use]
        ys = [float(getattr(s.measured, res)) for s in use]
        errs = [_step_error(by_step.get(s.step, []), res) for s in use]
        if res in (known_slope or {}) and xs:
            # The need is the busiest step's figure plus a slope that is no
            # measurement: only that step's error reaches the load.
            top = max(range(len(xs)), key=lambda k: xs[k])
            weights = [1.0 if i == top else 0.0 for i in range(len(xs))]
            fit = 0.0
        elif fit_regressed(xs, ys):
            n, mx = len(xs), sum(xs) / len(xs)
            sxx = sum((x - mx) ** 2 for x in xs)
            weights = [1 / n + (load - mx) * (x - mx) / sxx for x in xs]
            slope = sum((x - mx) * y for x, y in zip(xs, ys, strict=True)) / sxx
            intercept = sum(ys) / n - slope * mx
            ssr = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
            fit = (
                t90(n - 2) * math.sqrt(ssr / (n - 2) * (1 + 1 / n + (load - mx) ** 2 / sxx))
                if n >= 3
                else 0.0
            )
        else:
            top = max(range(len(xs)), key=lambda k: xs[k]) if xs else 0
            weights = [load / x if i == top and x else 0.0 for i, x in enumerate(xs)]
            fit = 0.0
        measured = math.sqrt(sum((w * e) ** 2 for w, e in zip(weights, errs, strict=True)))
        out[res] = math.hypot(measured, fit)
    return out


@dataclass(frozen=True)
class Extrapolation:
    need: Requirement  # at the expected load, before any margin
    detail: dict[str, object]
    how: str  # what the label says of it
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RampPredictor:
    """Physical extrapolation from the shadow's ramp (no history)."""

    loads_of: Callable[[str], tuple[list[float], float]]  # profile -> (ramp loads, iops/unit)
    shadow_vcpus: int = 1
    margin: float = 1.2
    # profile -> the MiB per unit its memory stressor asks for (None: an application's)
    memory_slope_of: Callable[[str], float | None] | None = None

    def extrapolation(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        app: AppRun | None = None,
    ) -> Extrapolation:
        """The ramp's need at ``load`` and what it says about it, before any margin."""
        if load is None:
            raise ConfigError("load", f"profile {profile} needs an expected load to extrapolate to")
        ramp, iops_per_unit = self.loads_of(profile)
        # A step numbered one past the ramp ran at the expected load itself.
        loads = [*ramp, load]
        achieved = app.achieved if app is not None else None
        steps = ramp_steps(shadow_points, loads, iops_per_unit, self.shadow_vcpus, achieved)
        need, detail = extrapolate(steps, load)
        if app is not None:
            detail["app"] = app.as_dict()
        notes = []
        known = self._known_slopes(steps, profile, load, app)
        if "memory_mib" in known:
            need, detail = _with_memory_slope(steps, load, known["memory_mib"], need, detail)
            notes.append(
                f"memory: measured at {max(s.load for s in steps):g}, plus the "
                f"{known['memory_mib']:g} MiB per unit its working set asks beyond that"
            )
        if len(steps) == 1 and steps[0].load != load:
            # Through the origin: a fixed cost (the OS, a base working set) is
            # scaled with the load too, which over-states the need, never under.
            what = "CPU and I/O" if known else "cost"
            notes.append(f"one step: {what} taken as proportional to the load")
        contention = contention_detail(shadow_points, self.shadow_vcpus)
        if contention is not None:
            detail["contention"] = contention
            starved = contended_text(contention)
            if starved:
                notes.append(starved)
        top = max(s.load for s in steps)
        beyond = load / top if top else math.inf
        if any(s.load == load for s in steps):
            how = f"measured at the expected load {load:g} ({len(steps)} ramp steps)"
        else:
            how = (
                f"physical extrapolation from {len(steps)} ramp steps (up to {top:g}, "
                f"target {load:g}: x{beyond:.1f} beyond the ramp)"
            )
        lo, hi = symmetric(need, ramp_half_widths(shadow_points, steps, load, known))
        detail.update(
            engine=ENGINE,
            # What the learned correction starts from, and what the history
            # record of this launch keeps (``controller.observing``).
            extrapolated=need.as_dict(),
            beyond_ramp=round(beyond, 4) if math.isfinite(beyond) else None,
            **interval_detail(lo, hi, basis=RAMP_BASIS),
        )
        return Extrapolation(need, detail, how, tuple(notes))

    def _known_slopes(
        self, steps: Sequence[RampStep], profile: str, load: float, app: AppRun | None
    ) -> dict[str, float]:
        """Memory's cost per unit when the ramp measured it at one load below
        ``load`` and the profile's stressor says it: a vm stressor holds what it
        asks (``ceil(base + load x per_unit)`` MiB; 1.004-1.006 times that
        seen under TCG), so a second load's memory phase could not change the
        answer (``workloads.catalog.ramp_plan`` no longer runs one), and through
        the origin would scale the OS and the base working set with the load."""
        mem = fitted_steps(steps, "memory_mib")
        if app is not None or self.memory_slope_of is None or len({s.load for s in mem}) != 1:
            return {}
        if mem[0].load == load:
            return {}
        slope = self.memory_slope_of(profile)
        return {} if slope is None else {"memory_mib": slope}

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,
    ) -> Prediction:
        """``app``: what the application achieved, when the profile ran it (``app_run``)."""
        ex = self.extrapolation(shadow_points, profile=profile, load=load, app=app)
        need = ex.need
        padded = Requirement(
            need.vcpus * self.margin, need.memory_mib * self.margin, need.iops * self.margin
        )
        return Prediction(
            method=ENGINE,
            label=f"{ex.how} with margin x{self.margin:g}" + "".join(f"; {n}" for n in ex.notes),
            history_size=0,
            margin=self.margin,
            need=need,
            recommended=round_allocation(padded),
            detail=ex.detail,
        )


def _with_memory_slope(
    steps: Sequence[RampStep],
    load: float,
    slope: float,
    need: Requirement,
    detail: dict[str, object],
) -> tuple[Requirement, dict[str, object]]:
    top = max(fitted_steps(steps, "memory_mib"), key=lambda s: s.load)
    fixed = top.measured.memory_mib - slope * top.load
    for key, value in (("cost_per_unit", slope), ("fixed", fixed)):
        figures = detail.get(key)
        if isinstance(figures, dict):
            figures["memory_mib"] = round(value, 6 if key == "cost_per_unit" else 3)
    return dataclasses.replace(need, memory_mib=fixed + slope * load), detail


def profile_loads(name: str) -> tuple[list[float], float]:
    """A profile's ramp loads and IOPS per unit, from its definition."""
    p = load_profile(name)
    return list(p.ramp), p.per_unit.iops


def profile_memory_slope(name: str) -> float | None:
    """The MiB per unit a profile's memory stressor asks for; None for a
    profile that runs an application (its memory is what the program takes)."""
    p = load_profile(name)
    return None if p.app is not None else p.per_unit.memory_mib


@dataclass(frozen=True)
class ProfilePredictor:
    """Smoke: the shadow's measured usage x margin. A workload profile: the
    physical extrapolation of its ramp to the expected load."""

    margin: float
    shadow_vcpus: int

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,
    ) -> Prediction:
        if profile == SMOKE:
            return ShadowMeasuredPredictor(self.margin).predict(
                shadow_points, profile=profile, load=load
            )
        return RampPredictor(
            profile_loads, self.shadow_vcpus, self.margin, profile_memory_slope
        ).predict(shadow_points, profile=profile, load=load, target=target, app=app)
