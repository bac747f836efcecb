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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from vmshadow.agent.conversation import Sample
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.ramp import ramp_saturated
from vmshadow.domain.samples import Source, UsagePoint


@dataclass
class PhaseRun:
    spec: PhaseSpec
    started_s: float
    ended_s: float
    result: dict[str, object]


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


@dataclass
class ProfileHooks:
    """What the caller does around the loop; each is optional.

    ``phase_started`` may raise to stop the profile (the controller's cancel).
    """

    step_started: Callable[[int], None] = _nothing
    phase_started: Callable[[PhaseSpec], None] = _nothing
    phase_done: Callable[[PhaseSpec], None] = _nothing
    saturated: Callable[[int], None] = _nothing


def run_profile(
    runner: PhaseRunner,
    steps: Sequence[Sequence[PhaseSpec]],
    series: Sequence[UsagePoint],
    *,
    shadow_vcpus: int,
    deadline: float | None = None,
    hooks: ProfileHooks | None = None,
) -> list[PhaseRun]:
    """Run ``steps`` (a ramp of loads, or one step) phase by phase in ``runner``.

    After each step of a ramp, the step's CPU phase is checked against
    ``shadow_vcpus`` in ``series`` (the points measured so far, which the
    runner's samplers keep appending to): a step that kept the shadow's vCPUs
    busy ends the ramp, since higher loads would tell nothing more. A single
    step is never checked. ``deadline`` (host monotonic seconds) bounds every
    phase. Returns the phases run, in order.

        runs = run_profile(session, ramp_plan(profile, duration_s=20, shadow_memory_mib=512),
                           session.record.series, shadow_vcpus=1)
    """
    cb = hooks or ProfileHooks()
    runs: list[PhaseRun] = []
    for n, phases in enumerate(steps):
        cb.step_started(n)
        for spec in phases:
            cb.phase_started(spec)
            runs.append(runner.run_phase(spec, deadline=deadline))
            cb.phase_done(spec)
        ids = [p.phase_id for p in phases]
        if len(steps) > 1 and ramp_saturated(series, ids, shadow_vcpus):
            cb.saturated(n)
            break
    return runs


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


__all__ = ["PhaseRun", "PhaseRunner", "ProfileHooks", "guest_point", "run_profile"]
