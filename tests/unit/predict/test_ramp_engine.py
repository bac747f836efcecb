"""The ramp engine's interval: from what its steps measured, wider where they
scatter and the further it reaches beyond them."""

from __future__ import annotations

import random

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.ramp import RampPredictor

LOADS = [25.0, 50.0, 100.0]


def points(noise: float, seed: int = 0, bend: float = 0.0) -> list[UsagePoint]:
    """CPU and I/O phases costing 0.004 vCPU and 0.5 IOPS per unit, with
    sample noise ``noise`` (a share) and a bend away from a line (``bend``)."""
    rng = random.Random(seed)
    out = []
    for step, load in enumerate(LOADS):
        cost = 0.004 * load * (1 + bend * (step == 1))
        for i in range(12):
            t = step * 100.0 + i
            busy = cost * (1 + rng.uniform(-noise, noise))
            io = 0.5 * load * (1 + rng.uniform(-noise, noise))
            out.append(UsagePoint(t, Source.HOST, f"s{step}-cpu", busy, None, 0, 0, 0, 0))
            out.append(UsagePoint(t, Source.GUEST, f"s{step}-memory", 0.1, 200 + load, 0, 0, 0, 0))
            out.append(UsagePoint(t + 50, Source.HOST, f"s{step}-io", 0.1, None, io, 0, 0, 0))
    return out


def interval(pts: list[UsagePoint], load: float, res: str = "vcpus") -> tuple[float, float]:
    p = RampPredictor(lambda _n: (LOADS, 0.5), shadow_vcpus=2, margin=1.2).predict(
        pts, profile="web", load=load
    )
    assert p.detail["interval_coverage"] == 0.9
    assert p.detail["history_count"] == 0
    assert p.detail["extrapolated"] == p.need.as_dict()
    got = p.detail["interval"]
    assert isinstance(got, dict)
    lo, hi = got[res]
    assert lo <= float(getattr(p.need, res)) <= hi
    return lo, hi


def test_steps_that_scatter_widen_the_interval() -> None:
    lo0, hi0 = interval(points(noise=0.0), 400)
    lo1, hi1 = interval(points(noise=0.3), 400)
    assert hi0 - lo0 <= 0.003  # a perfect line: nothing to doubt but the rounding
    assert hi1 - lo1 > 0.05


def test_the_further_beyond_the_ramp_the_wider() -> None:
    pts = points(noise=0.2, seed=3)
    near, far = interval(pts, 150, "iops"), interval(pts, 1000, "iops")
    assert far[1] - far[0] > 2 * (near[1] - near[0])


def test_steps_off_a_line_widen_it_even_without_sample_noise() -> None:
    lo, hi = interval(points(noise=0.0, bend=0.3), 400)
    assert hi - lo > 0.1
