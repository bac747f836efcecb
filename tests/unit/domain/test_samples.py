import math

import pytest

from vmshadow.domain.samples import Source, UsagePoint, percentile, summarize_phase


def point(
    t: float,
    busy: float,
    mem: float | None,
    iops: float,
    src: Source = Source.HOST,
    phase: str | None = "cpu",
) -> UsagePoint:
    return UsagePoint(t, src, phase, busy, mem, iops / 2, iops / 2, 0.0, 0.0)


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([0, 10], 95) == pytest.approx(9.5)
    assert percentile([7], 95) == 7


def test_percentile_of_nothing_is_nan_not_zero() -> None:
    assert math.isnan(percentile([], 95))


@pytest.mark.parametrize("q", [-1, 101])
def test_percentile_rejects_bad_q(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], q)


def test_summarize_phase_keeps_views_and_phases_apart() -> None:
    series = [
        point(1, 0.9, 100, 10),
        point(2, 1.0, 120, 20),
        point(3, 0.2, 500, 1000, phase="io"),
        point(1, 0.5, 90, 5, src=Source.GUEST),
    ]
    host = summarize_phase(series, "cpu", Source.HOST)
    assert host.samples == 2
    assert host.peak_mem_used_mib == 120
    assert host.p95_busy_vcpus == pytest.approx(0.995)
    guest = summarize_phase(series, "cpu", Source.GUEST)
    assert guest.samples == 1 and guest.p95_iops == 5


def test_summary_without_memory_reports_none() -> None:
    s = summarize_phase([point(1, 1.0, None, 0)], "cpu", Source.HOST)
    assert s.as_dict()["peak_mem_used_mib"] is None
