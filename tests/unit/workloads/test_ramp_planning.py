"""The ramp planned around the expected load: measured as it is when the shadow
holds it, else the largest load it holds and one lower; the fit still works
with one or two steps, and a step's missing phases are no zeros."""

from __future__ import annotations

from vmshadow.domain.ramp import expected_step
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.ramp import RampPredictor
from vmshadow.workloads.catalog import HOLD_CPU, plan_for, ramp_plan
from vmshadow.workloads.profiles import parse_profile

PROFILE = """
name: p
unit: req/s
per_unit: {cpu_percent: 0.4, memory_mib: 0.5, iops: 0.05}
base_memory_mib: 96
ramp: [25, 50, 100, 200]
"""


def ids(steps: list[list[object]]) -> list[list[str]]:
    return [[p.phase_id for p in s] for s in steps]  # type: ignore[attr-defined]


def test_a_load_the_shadow_holds_is_one_step_at_that_load() -> None:
    p = parse_profile(PROFILE, "p.yaml")
    plan = ramp_plan(p, duration_s=8, shadow_memory_mib=512, load=200)
    assert [(s.step, s.load) for s in plan.steps] == [(3, 200)]  # a ramp load: its own number
    assert ids(plan.phases) == [["s3-cpu", "s3-memory", "s3-io"]]
    # Should it saturate after all: a load of half or less, CPU only.
    assert [(s.load, [x.phase_id for x in s.phases]) for s in plan.fallback] == [(100, ["s2-cpu"])]


def test_a_load_off_the_ramp_is_numbered_one_past_it() -> None:
    p = parse_profile(PROFILE, "p.yaml")
    plan = ramp_plan(p, duration_s=8, shadow_memory_mib=512, load=150)
    assert [(s.step, s.load) for s in plan.steps] == [(expected_step(p.ramp), 150)]


def test_a_load_beyond_the_shadow_is_the_largest_it_holds() -> None:
    p = parse_profile(PROFILE, "p.yaml")
    plan = ramp_plan(p, duration_s=8, shadow_memory_mib=512, load=1000)
    assert [s.load for s in plan.steps] == [200]
    # Extrapolated from the top step (memory by what its stressor asks per
    # unit), the lower load's CPU standing by should the top saturate.
    assert ids(plan.phases) == [["s3-cpu", "s3-memory", "s3-io"]]
    assert ids(plan.fallback_phases) == [["s2-cpu"]]


def test_the_cpu_headroom_decides_what_the_shadow_holds() -> None:
    p = parse_profile(PROFILE, "p.yaml")
    at_edge = HOLD_CPU * 100 / 0.4  # load whose declared cost is HOLD_CPU of one vCPU
    assert ramp_plan(p, duration_s=8, shadow_memory_mib=512, load=at_edge).steps[0].load == at_edge
    beyond = ramp_plan(p, duration_s=8, shadow_memory_mib=512, load=at_edge * 1.1)
    assert beyond.steps[0].load < at_edge * 1.1  # extrapolated from a load it holds
    # Two vCPUs hold what one does not.
    big = ramp_plan(p, duration_s=8, shadow_memory_mib=512, load=at_edge * 1.1, shadow_vcpus=2)
    assert big.steps[0].load == at_edge * 1.1


def test_without_a_load_the_whole_ramp_runs() -> None:
    p = parse_profile(PROFILE, "p.yaml")
    assert len(ramp_plan(p, duration_s=8, shadow_memory_mib=512).steps) == 4


def test_smoke_is_one_step() -> None:
    plan = plan_for("smoke", None, duration_s=4, shadow_memory_mib=512)
    assert len(plan.steps) == 1 and plan.fallback == []


def points(step: int, cpu: float, mem: float | None, iops: float | None) -> list[UsagePoint]:
    out = []
    for t in range(5):
        out.append(UsagePoint(t, Source.HOST, f"s{step}-cpu", cpu, None, 0, 0, 0, 0))
        if mem is not None:
            out.append(UsagePoint(t, Source.GUEST, f"s{step}-memory", 0.0, mem, 0, 0, 0, 0))
        if iops is not None:
            out.append(UsagePoint(t, Source.HOST, f"s{step}-io", 0.0, None, iops, 0, 0, 0))
    return out


def predictor() -> RampPredictor:
    return RampPredictor(lambda _n: ([25, 50, 100, 200], 0.05), shadow_vcpus=1, margin=1.0)


def test_measured_at_the_load_the_need_is_the_measurement() -> None:
    pts = points(4, 0.6, 180.0, 8.0)  # step 4: one past the ramp, the expected load 150
    p = predictor().predict(pts, profile="p", load=150)
    assert (round(p.need.vcpus, 3), p.need.memory_mib, p.need.iops) == (0.6, 180.0, 8.0)
    assert "measured at the expected load 150" in p.label


def test_two_steps_fit_a_fixed_cost_and_the_missing_io_is_no_zero() -> None:
    # Step 2 (100) ran CPU and memory only; step 3 (200) all three.
    pts = points(2, 0.4, 150.0, None) + points(3, 0.8, 200.0, 10.0)
    p = predictor().predict(pts, profile="p", load=400)
    assert abs(p.need.vcpus - 1.6) < 1e-6
    assert abs(p.need.memory_mib - 300.0) < 1e-6  # 100 MiB fixed + 0.5 MiB per unit
    assert abs(p.need.iops - 20.0) < 1e-6  # through the origin from step 3 alone
    ramp = p.detail["ramp"]
    assert isinstance(ramp, list) and "iops" not in ramp[0]["measured"]


def test_one_step_below_the_load_says_its_fit_is_proportional() -> None:
    p = predictor().predict(points(3, 0.8, 200.0, 10.0), profile="p", load=400)
    assert abs(p.need.memory_mib - 400.0) < 1e-6  # over-states the fixed part, never under
    assert "proportional" in p.label


def test_one_step_memory_adds_what_the_stressor_asks_per_unit() -> None:
    # The profile's stressor asks 96 + 0.5 MiB per unit: measured 200 MiB at
    # 200, so 300 MiB at 400, the line two memory steps drew above, not the
    # 400 MiB through the origin; CPU and I/O stay proportional.
    slope = RampPredictor(lambda _n: ([25, 50, 100, 200], 0.05), 1, 1.0, lambda _n: 0.5).predict(
        points(3, 0.8, 200.0, 10.0), profile="p", load=400
    )
    assert abs(slope.need.memory_mib - 300.0) < 1e-6
    assert abs(slope.need.vcpus - 1.6) < 1e-6 and abs(slope.need.iops - 20.0) < 1e-6
    assert "0.5 MiB per unit" in slope.label and "CPU and I/O taken as proportional" in slope.label
    assert slope.detail["fixed"]["memory_mib"] == 100.0  # type: ignore[index]
    # Its interval carries the one step's error as it is, not scaled x2 with the load.
    lo, hi = slope.detail["interval"]["memory_mib"]  # type: ignore[index]
    plain = predictor().predict(points(3, 0.8, 200.0, 10.0), profile="p", load=400)
    plo, phi = plain.detail["interval"]["memory_mib"]  # type: ignore[index]
    assert hi - lo <= (phi - plo) / 2 + 1e-6
    # An application's memory is what its program takes: no slope is known.
    app = RampPredictor(lambda _n: ([25, 50, 100, 200], 0.05), 1, 1.0, lambda _n: None)
    assert (
        abs(app.predict(points(3, 0.8, 200.0, 10.0), profile="p", load=400).need.memory_mib - 400)
        < 1e-6
    )


def test_a_memory_phase_that_ended_held_is_no_wide_interval() -> None:
    # Held at its first sample (domain.stability ends it there): a tenth of
    # the peak at most was still to come, not the whole peak.
    pts = [
        UsagePoint(0.0, Source.HOST, "s4-cpu", 0.6, None, 0, 0, 0, 0),
        UsagePoint(1.0, Source.HOST, "s4-cpu", 0.6, None, 0, 0, 0, 0),
        UsagePoint(2.0, Source.HOST, "s4-cpu", 0.6, None, 0, 0, 0, 0),
        UsagePoint(3.0, Source.GUEST, "s4-memory", 0.0, 224.0, 0, 0, 0, 0),
    ]
    p = predictor().predict(pts, profile="p", load=150)
    lo, hi = p.detail["interval"]["memory_mib"]  # type: ignore[index]
    assert (lo, hi) == (224.0 - 22.4, 224.0 + 22.4)
