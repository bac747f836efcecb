"""From ramp steps to the need at the user's load."""

from __future__ import annotations

import pytest

from vmshadow.domain.ramp import extrapolate, ramp_saturated, ramp_steps
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.ramp import RampPredictor


def pts(step: int, cpu: float, mem: float, iops: float) -> list[UsagePoint]:
    out = []
    for phase, c, m, i in (("cpu", cpu, 100, 0), ("memory", 1.0, mem, 0), ("io", 0.3, 90, iops)):
        for src in (Source.HOST, Source.GUEST):
            out += [UsagePoint(0, src, f"s{step}-{phase}", c, m, i, 0, 0, 0) for _ in range(5)]
    return out


LOADS = [10.0, 20.0, 40.0, 80.0]


def ramp(cpu_per_unit: float = 0.01) -> list[UsagePoint]:
    return [
        p
        for s, load in enumerate(LOADS)
        for p in pts(s, min(1.0, 0.05 + cpu_per_unit * load), 100 + 2 * load, 0.5 * load)
    ]


def test_linear_costs_are_recovered_and_extrapolated() -> None:
    steps = ramp_steps(ramp(), LOADS, iops_per_unit=0.5, shadow_vcpus=1)
    need, detail = extrapolate(steps, 400)
    assert need.vcpus == pytest.approx(0.05 + 0.01 * 400)
    assert need.memory_mib == pytest.approx(100 + 2 * 400)
    assert need.iops == pytest.approx(200)
    assert detail["max_sustained_load"] == 80


def test_saturated_cpu_steps_are_left_out_of_the_cpu_fit() -> None:
    points = ramp(cpu_per_unit=0.02)  # 80 units -> 1.65: capped at 1.0, saturated
    steps = ramp_steps(points, LOADS, iops_per_unit=0.5, shadow_vcpus=1)
    assert [s.cpu_saturated for s in steps] == [False, False, False, True]  # 0.85, then 1.0
    need, _ = extrapolate(steps, 100)
    assert need.vcpus == pytest.approx(0.05 + 0.02 * 100)
    assert ramp_saturated(points, ["s3-cpu"], 1)
    assert not ramp_saturated(points, ["s0-cpu"], 1)


def test_predictor_labels_itself_and_rounds() -> None:
    pred = RampPredictor(lambda _n: (LOADS, 0.5), shadow_vcpus=1, margin=1.2).predict(
        ramp(), profile="web", load=400
    )
    assert pred.method == "ramp-extrapolation" and "ramp steps" in pred.label
    assert pred.recommended.vcpus == 5  # 4.05 x 1.2 = 4.86
    assert pred.recommended.memory_mib == 1280  # 900 x 1.2 = 1080, next 256 MiB step
    assert pred.recommended.iops == 240


def test_disk_that_cannot_keep_up_is_not_fitted() -> None:
    points = [p for s, load in enumerate(LOADS) for p in pts(s, 0.1, 100, min(0.5 * load, 12))]
    steps = ramp_steps(points, LOADS, iops_per_unit=0.5, shadow_vcpus=1)
    assert [s.iops_short for s in steps] == [False, False, True, True]
