"""Features of a shadow run, from sar series and from vmshadow's own samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.features import (
    FEATURES,
    SHADOW_FEATURES,
    feature_row,
    series_from_points,
    shadow_features,
)
from vmshadow.predict.sar import UsageSeries


def series(cpu: list[float], mem: list[float]) -> UsageSeries:
    n = len(cpu)
    z = np.zeros(n)
    io = np.full(n, 10.0)
    t = np.arange(1.0, n + 1)
    return UsageSeries(2, np.array(cpu), np.array(mem), io / 2, io / 2, io, z + 4096, z, t=t)


def test_cpu_as_a_share_of_the_shadow_and_saturation() -> None:
    f = shadow_features(series([2.0, 2.0, 1.0, 0.0], [100, 200, 300, 400]), memory_mib=1000)
    assert set(f) == set(SHADOW_FEATURES)
    assert f["cpu_saturated"] == 0.5
    assert f["cpu_busy_half"] == 0.75
    assert f["cpu_mean"] == pytest.approx(5 / 8)
    assert f["mem_fill"] == pytest.approx(0.4)
    assert f["mem_growth"] == pytest.approx((400 - 100) / 400)
    assert f["iops_write_share"] == 0.5
    assert f["bytes_per_io_log"] == pytest.approx(math.log1p(4096 / 10))
    # Processes started and page faults were not measured: NaN, not "none".
    assert math.isnan(f["forks_total_log"]) and math.isnan(f["faults_p95_log"])


def test_processes_started_and_page_faults() -> None:
    s = series([2.0, 2.0, 2.0], [100, 100, 100])
    s = UsageSeries(**{**s.__dict__, "forks": np.array([0.0, 4.0, 20.0]),
                       "faults": np.array([1000.0, 1000.0, 5000.0])})  # fmt: skip
    f = shadow_features(s, memory_mib=1000)
    assert f["forks_total_log"] == pytest.approx(math.log1p(24))
    assert f["forks_p50_log"] == pytest.approx(math.log1p(4))
    assert f["faults_p95_log"] == pytest.approx(math.log1p(4600))


def test_durations_and_totals_come_from_timestamps_not_counts() -> None:
    """Three samples 5 s apart: 15 s measured, and 4 forks/s for 15 s is 60 forks."""
    s = series([1.0, 1.0, 1.0], [100, 100, 100])
    s = UsageSeries(**{**s.__dict__, "t": np.array([100.0, 105.0, 110.0]),
                       "forks": np.full(3, 4.0), "faults": np.full(3, 10.0)})  # fmt: skip
    assert s.interval_s == 5.0 and s.seconds == 15.0
    f = shadow_features(s, memory_mib=1000)
    assert f["seconds_log"] == pytest.approx(math.log1p(15))
    assert f["forks_total_log"] == pytest.approx(math.log1p(60))
    assert f["faults_total_log"] == pytest.approx(math.log1p(150))


def test_a_gap_counts_as_time_but_one_sample_speaks_for_few_intervals() -> None:
    """1 s samples with 30 s missing: the run lasted 40 s; the sample after the gap
    weighs 4 intervals (GAP_INTERVALS), not 31, in the shares."""
    t = np.concatenate([np.arange(1.0, 6.0), np.arange(36.0, 41.0)])
    cpu = np.array([0.0] * 5 + [2.0] * 5)
    s = series(list(cpu), [100.0] * 10)
    s = UsageSeries(**{**s.__dict__, "t": t})
    assert s.seconds == 40.0
    f = shadow_features(s, memory_mib=1000)
    assert f["cpu_saturated"] == pytest.approx(8 / 13)  # 4 + 4 busy seconds of 13 weighed
    assert f["seconds_log"] == pytest.approx(math.log1p(40))


def test_timestamps_must_pair_with_values() -> None:
    s = series([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="timestamps"):
        UsageSeries(**{**s.__dict__, "t": np.array([1.0])})


def test_feature_row_order_and_missing_features() -> None:
    row = feature_row(
        {"cpu_p95": 0.9},
        shadow_vcpus=2,
        shadow_memory_mib=4096,
        target_vcpus=8,
        target_memory_mib=16384,
    )
    assert len(row) == len(FEATURES)
    assert row[FEATURES.index("cpu_p95")] == 0.9
    assert math.isnan(row[FEATURES.index("cpu_p50")])  # the trees route NaN themselves
    assert row[FEATURES.index("vcpu_ratio_log")] == pytest.approx(math.log(4))
    assert row[FEATURES.index("target_memory_gib")] == 16


def test_series_from_points_cpu_from_host_memory_from_guest() -> None:
    def pt(t: float, src: Source, cpu: float, mem: float | None) -> UsagePoint:
        if src is Source.GUEST:
            return UsagePoint(t, src, "p", cpu, mem, 3, 2, 100, 200, forks_ps=6, faults_ps=800)
        return UsagePoint(t, src, "p", cpu, mem, 3, 2, 100, 200)

    s = series_from_points(
        [
            pt(2, Source.HOST, 0.9, 500),
            pt(3, Source.GUEST, 0.1, 300),
            pt(4, Source.HOST, 0.7, None),
        ],
        1,
    )
    assert list(s.busy_vcpus) == [0.9, 0.7]
    assert list(s.mem_used_mib) == [300]
    assert list(s.forks) == [6] and list(s.faults) == [800]  # only the guest sees them
    assert list(s.iops) == [5, 5]
    assert s.requirement().vcpus == pytest.approx(0.89)
    assert list(s.t) == [2, 4] and list(s.mem_times) == [3] and s.interval_s == 2
