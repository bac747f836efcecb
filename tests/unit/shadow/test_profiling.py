"""The one profiling path: the ramp stops at the step that saturates the
shadow, a single step runs whole, the hooks see every phase in order, and a
guest sample lands on the host's clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vmshadow.agent.conversation import Sample
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.shadow.profiling import PhaseRun, ProfileHooks, guest_point, run_profile


@dataclass
class Guest:
    """A phase runner whose host view reports ``busy[phase_id]`` vCPUs for each second."""

    busy: dict[str, float]
    series: list[UsagePoint] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)

    def run_phase(self, spec: PhaseSpec, *, deadline: float | None = None) -> PhaseRun:
        self.deadlines.append(deadline)
        start = float(len(self.series))
        for n in range(spec.duration_s):
            b = self.busy.get(spec.phase_id, 0.1)
            self.series.append(
                UsagePoint(start + n, Source.HOST, spec.phase_id, b, 100.0, 0, 0, 0, 0)
            )
        return PhaseRun(spec, start, start + spec.duration_s, {})


def step(n: int) -> list[PhaseSpec]:
    return [PhaseSpec(f"s{n}-cpu", "idle", 3), PhaseSpec(f"s{n}-io", "idle", 3)]


def test_the_ramp_ends_after_the_step_that_saturates_the_shadow() -> None:
    guest = Guest({"s0-cpu": 0.3, "s1-cpu": 0.95, "s2-cpu": 0.99})
    seen: list[str] = []
    hooks = ProfileHooks(
        step_started=lambda n: seen.append(f"step {n}"),
        phase_started=lambda s: seen.append(f"start {s.phase_id}"),
        phase_done=lambda s: seen.append(f"done {s.phase_id}"),
        saturated=lambda n: seen.append(f"saturated {n}"),
    )
    runs = run_profile(
        guest, [step(0), step(1), step(2)], guest.series, shadow_vcpus=1, hooks=hooks
    )
    assert [r.spec.phase_id for r in runs] == ["s0-cpu", "s0-io", "s1-cpu", "s1-io"]
    assert seen == [
        "step 0",
        "start s0-cpu",
        "done s0-cpu",
        "start s0-io",
        "done s0-io",
        "step 1",
        "start s1-cpu",
        "done s1-cpu",
        "start s1-io",
        "done s1-io",
        "saturated 1",
    ]


def test_the_same_load_on_a_bigger_shadow_does_not_saturate_it() -> None:
    guest = Guest({"s0-cpu": 0.95, "s1-cpu": 0.95})
    runs = run_profile(guest, [step(0), step(1)], guest.series, shadow_vcpus=2)
    assert len(runs) == 4


def test_a_single_step_runs_whole_and_every_phase_gets_the_deadline() -> None:
    guest = Guest({"s0-cpu": 1.0})
    runs = run_profile(guest, [step(0)], guest.series, shadow_vcpus=1, deadline=123.0)
    assert [r.spec.phase_id for r in runs] == ["s0-cpu", "s0-io"]
    assert guest.deadlines == [123.0, 123.0]


def test_a_hook_that_raises_stops_before_the_next_phase() -> None:
    class Cancelled(Exception):
        pass

    def cancel_second(spec: PhaseSpec) -> None:
        if spec.phase_id == "s0-io":
            raise Cancelled

    guest = Guest({})
    with pytest.raises(Cancelled):
        run_profile(
            guest,
            [step(0)],
            guest.series,
            shadow_vcpus=1,
            hooks=ProfileHooks(phase_started=cancel_second),
        )
    assert {p.phase_id for p in guest.series} == {"s0-cpu"}


def test_a_guest_sample_is_shifted_onto_the_host_clock() -> None:
    s = Sample("s0-cpu", 2.5, 1.0, 0.75, 2048, 4096, 10.0, 5.0, 4096.0, 2048.0, 3.0, 40.0)
    p = guest_point(s, offset=7.25)
    assert (p.t, p.source, p.phase_id, p.busy_vcpus, p.mem_used_mib) == (
        9.75,
        Source.GUEST,
        "s0-cpu",
        0.75,
        2.0,
    )
    assert (p.read_iops, p.write_iops, p.read_bps, p.write_bps) == (10.0, 5.0, 4096.0, 2048.0)
    assert (p.forks_ps, p.faults_ps) == (3.0, 40.0)
