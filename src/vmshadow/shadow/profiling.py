"""One profiling path: the steps of a profile, run phase by phase, in a shadow
or in a full VM, with the ramp stopped once a step saturates the shadow.

The controller (``controller/steps.py``), ``vmshadow plan``, ``vmshadow shadow
run`` and the closed loop's full VM (``usecases/``) all run their phases
through ``run_profile``; the guest's samples become ``UsagePoint`` through
``guest_point``. What differs between them is a parameter or a hook: the
deadline (``shadow run``), what happens before and after each phase (the
controller checks for a cancel and flushes its samples to the store), and
what a saturated step is told to (an event, or a line on the terminal).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from vmshadow.agent.conversation import Sample
from vmshadow.agent.phasespec import PhaseSpec, StressNgParams
from vmshadow.config import ControllerSettings
from vmshadow.domain.contention import CONTENTION_MAX, Contention, phase_wait
from vmshadow.domain.ramp import ramp_saturated, step_of
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.stability import Held, StopRule, Verdict, verdict
from vmshadow.hypervisor.nodestats import CpuTimes, cpu_shares, is_local, local_cpu_times


@dataclass
class PhaseRun:
    spec: PhaseSpec
    started_s: float
    ended_s: float
    result: dict[str, object]
    stopped: bool = False  # the host asked it to end before its duration
    ended: str = ""  # why it ended, for a user: "stable after 4.1 s: ..." / "its 8 s maximum"
    contention: Contention | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "phase_id": self.spec.phase_id,
            "seconds": round(self.ended_s - self.started_s, 2),
            "max_s": self.spec.duration_s,
            "ended": self.ended,
            "contention": self.contention.as_dict() if self.contention else None,
        }


class PhaseRunner(Protocol):
    """Runs one phase in a guest while both views sample it (``ShadowSession``)."""

    def run_phase(
        self,
        spec: PhaseSpec,
        *,
        deadline: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseRun: ...


def _nothing(_n: object) -> None:
    return None


def _nothing2(_n: object, _m: object) -> None:
    return None


@dataclass
class ProfileHooks:
    """What the caller does around the loop; each is optional.

    ``phase_started`` may raise to stop the profile (the controller's cancel).
    ``step_done`` gets the step's phases as run; ``note`` a line to show
    (a saturated step's lower load, a contended step run again).
    """

    step_started: Callable[[int], None] = _nothing
    phase_started: Callable[[PhaseSpec], None] = _nothing
    phase_done: Callable[[PhaseSpec], None] = _nothing
    saturated: Callable[[int], None] = _nothing
    step_done: Callable[[int, list[PhaseRun]], None] = _nothing2
    note: Callable[[str], None] = _nothing


@dataclass(frozen=True)
class Adaptive:
    """Phases that end when their estimate is stable, and steps run again
    when the host starved the shadow (``domain.stability``, ``domain.contention``).

    ``host_cpu`` reads the host's CPU counters (steal and load) where the host
    is this machine; None where it is not (the wait from libvirt still counts).
    """

    rule: StopRule = dataclasses.field(default_factory=StopRule)
    contention_max: float = CONTENTION_MAX
    retries: int = 1
    retry_wait_s: float = 2.0
    host_cpu: Callable[[], CpuTimes | None] | None = None

    @classmethod
    def from_settings(cls, c: ControllerSettings, uri: str) -> Adaptive:
        return cls(
            rule=StopRule(min_s=c.phase_min_s, within=c.stable_within),
            contention_max=c.contention_max,
            retries=c.contention_retries,
            host_cpu=local_cpu_times if is_local(uri) else None,
        )


def run_profile(
    runner: PhaseRunner,
    steps: Sequence[Sequence[PhaseSpec]],
    series: list[UsagePoint],
    *,
    shadow_vcpus: int,
    deadline: float | None = None,
    hooks: ProfileHooks | None = None,
    adaptive: Adaptive | None = None,
    fallback: Sequence[Sequence[PhaseSpec]] = (),
) -> list[PhaseRun]:
    """Run ``steps`` (a ramp of loads, or one step) phase by phase in ``runner``.

    After each step of a ramp, the step's CPU phase is checked against
    ``shadow_vcpus`` in ``series`` (the points measured so far, which the
    runner's samplers keep appending to): a step that kept the shadow's vCPUs
    busy ends the ramp, since higher loads would tell nothing more. A single
    step is never cut short so; when every step run saturated the shadow,
    the ``fallback`` steps (lower loads) run for a cost that is not a bound.
    ``deadline`` (host monotonic seconds) bounds every phase.

    With ``adaptive``, each phase ends once its estimate is stable (its spec's
    duration is the maximum), and a step during which the host starved the
    shadow is run again (``adaptive.retries`` times) with its points set
    aside (tagged with no phase); one still starved keeps its figures and
    says so. Returns the phases run, in order.

        runs = run_profile(session, ramp_plan(profile, ...).phases,
                           session.record.series, shadow_vcpus=1, adaptive=Adaptive())
    """
    cb = hooks or ProfileHooks()
    runs: list[PhaseRun] = []
    all_saturated = True
    plan = [*steps]
    n = 0
    while n < len(plan):
        phases = plan[n]
        cb.step_started(n)
        step_runs = _run_step(runner, phases, series, shadow_vcpus, deadline, cb, adaptive)
        runs.extend(step_runs)
        ids = [p.phase_id for p in phases]
        saturated = ramp_saturated(series, ids, shadow_vcpus)
        all_saturated = all_saturated and saturated
        if len(steps) > 1 and saturated and n < len(steps):
            cb.saturated(n)
            plan = plan[: n + 1]
        n += 1
        if n == len(plan) and fallback and all_saturated and len(plan) == len(steps):
            cb.note("the shadow saturated at every planned load: measuring a lower one")
            plan += list(fallback)
    return runs


def _run_step(
    runner: PhaseRunner,
    phases: Sequence[PhaseSpec],
    series: list[UsagePoint],
    vcpus: int,
    deadline: float | None,
    cb: ProfileHooks,
    adaptive: Adaptive | None,
) -> list[PhaseRun]:
    """One step's phases; again while the host starves the shadow (``adaptive``)."""
    n = step_of(phases[0].phase_id) if phases else None
    attempt = 0
    while True:
        first = len(series)
        runs = [_run_phase(runner, spec, series, vcpus, deadline, cb, adaptive) for spec in phases]
        cb.step_done(n if n is not None else -1, runs)
        if adaptive is None:
            return runs
        starved = [
            r for r in runs if r.contention and r.contention.contended(adaptive.contention_max)
        ]
        if not starved:
            return runs
        what = "; ".join(
            f"{r.spec.phase_id}: {r.contention.text()}" for r in starved if r.contention
        )
        if attempt >= adaptive.retries:
            cb.note(f"the host starved the shadow again ({what}): its figures are kept, flagged")
            return runs
        attempt += 1
        cb.note(f"the host starved the shadow ({what}): running the step again")
        _set_aside(series, first, {p.phase_id for p in phases})
        time.sleep(adaptive.retry_wait_s)


def _set_aside(series: list[UsagePoint], first: int, ids: set[str]) -> None:
    """Tag a starved attempt's points with no phase: kept, but in no figure.
    (Index assignment while a sampler thread appends is safe: nothing moves.)"""
    for i in range(first, len(series)):
        p = series[i]
        if p.phase_id in ids:
            series[i] = dataclasses.replace(p, phase_id=None)


def _run_phase(
    runner: PhaseRunner,
    spec: PhaseSpec,
    series: list[UsagePoint],
    vcpus: int,
    deadline: float | None,
    cb: ProfileHooks,
    adaptive: Adaptive | None,
) -> PhaseRun:
    cb.phase_started(spec)
    first = len(series)
    started = time.monotonic()
    said: list[Verdict] = []
    host_before = adaptive.host_cpu() if adaptive and adaptive.host_cpu else None
    held = _held(spec, series[:first])

    def stable() -> bool:
        assert adaptive is not None
        # Only this attempt's points: a refining round's earlier ones share the id.
        elapsed = time.monotonic() - started
        v = verdict(series[first:], spec.phase_id, elapsed, adaptive.rule, held=held)
        if v.stable:
            said.append(v)
        return v.stable

    if adaptive is None:
        run = runner.run_phase(spec, deadline=deadline)
    else:
        run = runner.run_phase(spec, deadline=deadline, stop_when=stable)
    took = time.monotonic() - started
    if said and run.stopped:
        run.ended = f"stable after {took:.1f} s: {said[-1].why}"
    else:
        run.ended = f"ran its {spec.duration_s} s maximum"
    if adaptive is not None:
        host_after = adaptive.host_cpu() if adaptive.host_cpu else None
        shares = cpu_shares(host_before, host_after) if host_before and host_after else None
        run.contention = Contention(
            wait=phase_wait(series[first:], spec.phase_id, vcpus),
            steal=shares[1] if shares else None,
            host_busy=shares[0] if shares else None,
        )
    cb.phase_done(spec)
    return run


def _held(spec: PhaseSpec, before: Sequence[UsagePoint]) -> Held | None:
    """What a memory stressor asks for, over the guest's last sample before it
    (None for any other phase, or with no guest sample yet to start from)."""
    params = spec.params
    if not isinstance(params, StressNgParams) or params.vm_bytes_mib is None:
        return None
    mems = [p for p in before if p.source is Source.GUEST and p.mem_used_mib is not None]
    if not mems:
        return None
    last = max(mems, key=lambda p: p.t).mem_used_mib
    assert last is not None
    return Held(before_mib=last, asked_mib=float(params.vm_bytes_mib * params.workers))


def step_text(load: float | None, runs: Sequence[PhaseRun]) -> str:
    """One line per step: how long each phase ran and why it ended."""
    at = f" at {load:g}" if load is not None else ""
    parts = []
    for r in runs:
        kind = r.spec.phase_id.split("-", 1)[-1]
        parts.append(f"{kind} {r.ended_s - r.started_s:.1f} s ({r.ended.split(':')[0]})")
    return f"step{at}: " + ", ".join(parts)


def guest_point(s: Sample, offset: float) -> UsagePoint:
    """The guest's sample on the host's clock: ``offset`` is when the agent said hello."""
    return UsagePoint(
        t=round(offset + s.t, 3),
        source=Source.GUEST,
        phase_id=s.phase_id,
        busy_vcpus=s.cpu_busy,
        mem_used_mib=s.mem_used_kib / 1024,
        read_iops=s.read_iops,
        write_iops=s.write_iops,
        read_bps=s.read_bps,
        write_bps=s.write_bps,
        forks_ps=s.forks_ps,
        faults_ps=s.faults_ps,
    )


__all__ = [
    "Adaptive",
    "PhaseRun",
    "PhaseRunner",
    "ProfileHooks",
    "guest_point",
    "run_profile",
    "step_text",
]
