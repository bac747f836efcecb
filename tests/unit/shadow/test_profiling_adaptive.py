"""Adaptive profiling: a phase ends when its estimate is stable, a step the host
starved runs again with its points set aside, and a plan whose every step
saturated the shadow measures its fallback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vmshadow.agent.phasespec import PhaseSpec, StressNgParams
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.stability import StopRule
from vmshadow.shadow.profiling import Adaptive, PhaseRun, ProfileHooks, run_profile

FAST = Adaptive(rule=StopRule(min_s=0.0, within=0.1), retries=1, retry_wait_s=0.0)


@dataclass
class Guest:
    """Emits one host point per 'second' of ``busy[phase]`` (or a noisy series)
    and asks ``stop_when`` after each, as the agent client does."""

    busy: dict[str, list[float]]
    wait: list[float] = field(default_factory=list)  # per attempt of a phase; popped
    series: list[UsagePoint] = field(default_factory=list)

    def run_phase(
        self,
        spec: PhaseSpec,
        *,
        deadline: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseRun:
        start = float(len(self.series))
        values = self.busy.get(spec.phase_id, [0.1])
        wait = self.wait.pop(0) if self.wait else 0.0
        stopped = False
        for n in range(spec.duration_s):
            b = values[n % len(values)]
            self.series.append(
                UsagePoint(
                    start + n, Source.HOST, spec.phase_id, b, 100.0, 0, 0, 0, 0, wait_vcpus=wait
                )
            )
            if stop_when is not None and stop_when():
                stopped = True
                break
        return PhaseRun(spec, start, float(len(self.series)), {}, stopped=stopped)


def test_a_steady_phase_stops_early_and_a_noisy_one_runs_its_maximum() -> None:
    guest = Guest({"s0-cpu": [0.5], "s1-cpu": [0.1, 0.9]})
    steps = [[PhaseSpec("s0-cpu", "idle", 20)], [PhaseSpec("s1-cpu", "idle", 20)]]
    runs = run_profile(guest, steps, guest.series, shadow_vcpus=1, adaptive=FAST)
    steady, noisy = runs
    assert steady.stopped and steady.ended_s - steady.started_s < 5
    assert steady.ended.startswith("stable after")
    assert not noisy.stopped and noisy.ended_s - noisy.started_s == 20
    assert noisy.ended == "ran its 20 s maximum"


def test_without_adaptive_every_phase_runs_whole() -> None:
    guest = Guest({"s0-cpu": [0.5]})
    (run,) = run_profile(guest, [[PhaseSpec("s0-cpu", "idle", 9)]], guest.series, shadow_vcpus=1)
    assert run.ended_s - run.started_s == 9 and run.contention is None


def test_a_starved_step_runs_again_with_its_first_points_set_aside() -> None:
    guest = Guest({"s0-cpu": [0.5]}, wait=[0.4, 0.0])
    notes: list[str] = []
    runs = run_profile(
        guest,
        [[PhaseSpec("s0-cpu", "idle", 6)]],
        guest.series,
        shadow_vcpus=1,
        adaptive=FAST,
        hooks=ProfileHooks(note=notes.append),
    )
    # The runs returned are the attempt that counts.
    assert len(runs) == 1 and runs[0].contention is not None
    assert not runs[0].contention.contended()
    assert len(notes) == 1 and "running the step again" in notes[0]
    tagged = [p for p in guest.series if p.phase_id == "s0-cpu"]
    assert tagged and all(p.wait_vcpus == 0.0 for p in tagged)  # only the second attempt's


def test_a_step_still_starved_after_its_retries_keeps_its_figures_and_says_so() -> None:
    guest = Guest({"s0-cpu": [0.5]}, wait=[0.4, 0.4])
    notes: list[str] = []
    run_profile(
        guest,
        [[PhaseSpec("s0-cpu", "idle", 6)]],
        guest.series,
        shadow_vcpus=1,
        adaptive=FAST,
        hooks=ProfileHooks(note=notes.append),
    )
    assert "kept, flagged" in notes[-1]
    assert any(p.phase_id == "s0-cpu" for p in guest.series)


def test_the_fallback_runs_only_when_the_planned_steps_saturated() -> None:
    fallback = [[PhaseSpec("s1-cpu", "idle", 4)]]
    saturating = Guest({"s3-cpu": [0.97], "s1-cpu": [0.5]})
    runs = run_profile(
        saturating,
        [[PhaseSpec("s3-cpu", "idle", 4)]],
        saturating.series,
        shadow_vcpus=1,
        fallback=fallback,
    )
    assert [r.spec.phase_id for r in runs] == ["s3-cpu", "s1-cpu"]
    holding = Guest({"s3-cpu": [0.6]})
    runs = run_profile(
        holding, [[PhaseSpec("s3-cpu", "idle", 4)]], holding.series, shadow_vcpus=1,
        fallback=fallback,
    )  # fmt: skip
    assert [r.spec.phase_id for r in runs] == ["s3-cpu"]


@dataclass
class Filling:
    """A guest whose memory rises by ``step`` MiB a sample from ``base`` up to
    ``base + asked`` while a memory phase runs; flat at ``base`` otherwise."""

    base: float
    step: float
    series: list[UsagePoint] = field(default_factory=list)

    def run_phase(
        self,
        spec: PhaseSpec,
        *,
        deadline: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseRun:
        start = float(len(self.series))
        params = spec.params
        asked = params.vm_bytes_mib if isinstance(params, StressNgParams) else None
        for n in range(spec.duration_s):
            mem = self.base + min(asked, (n + 1) * self.step) if asked else self.base
            self.series.append(
                UsagePoint(start + n, Source.GUEST, spec.phase_id, 0.5, mem, 0, 0, 0, 0)
            )
            if stop_when is not None and stop_when():
                return PhaseRun(spec, start, float(len(self.series)), {}, stopped=True)
        return PhaseRun(spec, start, float(len(self.series)), {})


def test_a_memory_phase_ends_once_the_guest_holds_what_its_stressor_asked() -> None:
    guest = Filling(base=30, step=100)
    vm = StressNgParams(stressor="vm", workers=1, vm_bytes_mib=200, vm_keep=True)
    step = [PhaseSpec("s0-cpu", "idle", 3), PhaseSpec("s0-memory", "stress-ng", 8, vm)]
    _cpu, memory = run_profile(guest, [step], guest.series, shadow_vcpus=1, adaptive=FAST)
    # 130, 230 MiB: the second sample holds the 200 MiB asked over the guest's 30.
    assert memory.stopped and memory.ended_s - memory.started_s == 2
    assert "of the 200 MiB asked" in memory.ended
