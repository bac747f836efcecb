"""The token bucket replay (QEMU's throttle as a fluid) and the burst rule."""

import numpy as np
import pytest

from vmshadow.domain.prediction import Requirement
from vmshadow.predict.tokenbucket import (
    MAX_BURST_S,
    MAX_PEAK_RATIO,
    MIN_BURST_S,
    MIN_PEAK_RATIO,
    Bucket,
    largest_backlog,
    recommend_bucket,
    replay,
)


def test_io_within_the_rate_never_waits_and_the_rest_is_unused() -> None:
    out = replay([1.0, 2.0, 3.0, 4.0], [50.0, 100.0, 0.0, 100.0], Bucket(100))
    assert out.waited == 0.0
    assert out.unused == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert (out.ios, out.seconds) == (250.0, 4.0)


def test_without_a_burst_rate_qemu_lets_a_tenth_of_a_second_through() -> None:
    # 300 I/Os in one second against 100/s: 100 + the 10-I/O bucket pass,
    # 190 wait and are served in the following seconds at the rate.
    out = replay([1.0, 2.0, 3.0, 4.0], [300.0, 0.0, 0.0, 0.0], Bucket(100))
    assert out.waited == pytest.approx(190 / 300)
    # Seconds 2 and 3 serve the backlog at the full rate, 4 the last 0 (none left).
    assert out.unused == pytest.approx((0 + 0 + 0.1 + 1) / 4)


def test_a_burst_bucket_absorbs_a_burst_until_it_is_full() -> None:
    # 1,000 I/Os per bucket (200/s for 5 s): one second at 600/s fits (500 over
    # the rate), two seconds do not (1,000 over, and the burst rate holds 200).
    b = Bucket(100, burst=200, burst_s=5)
    assert replay([1.0, 2.0], [200.0, 0.0], b).waited == 0.0
    capped = replay([1.0], [600.0], b)
    assert capped.waited == pytest.approx(1 - (200 + 20) / 600)
    length_one = Bucket(100, burst=600, burst_s=1)  # no burst bucket under QEMU at 1 s
    assert replay([1.0], [600.0], length_one).waited == 0.0
    # The next second, the bucket holds 100 more: 400 of its 600 wait.
    assert replay([1.0, 2.0], [600.0, 600.0], length_one).waited == pytest.approx(400 / 1200)


def test_time_comes_from_the_timestamps_not_the_sample_count() -> None:
    rng = np.random.default_rng(3)
    per_s = rng.gamma(0.5, 200.0, size=120)
    per_2s = per_s.reshape(-1, 2).mean(axis=1)  # what a 2 s sampler records
    b = Bucket(150, burst=300, burst_s=4)
    one = replay(np.arange(1.0, 121.0), per_s, b)
    two = replay(np.arange(2.0, 121.0, 2.0), per_2s, b)
    assert two.ios == pytest.approx(one.ios) and two.seconds == pytest.approx(120.0)
    # Averaging hides bursts: the coarser series waits less, never more.
    assert two.waited <= one.waited + 1e-12
    # A steady series is the same at any interval.
    steady = [replay(np.arange(s, 61.0, s), np.full(60 // s, 80.0), b) for s in (1, 3, 5)]
    assert {round(r.unused, 9) for r in steady} == {round(1 - 80 / 150, 9)}


def test_a_gap_speaks_for_at_most_four_intervals() -> None:
    out = replay([1.0, 2.0, 3.0, 4.0, 100.0], [10.0] * 5, Bucket(10))
    assert out.seconds == pytest.approx(8.0) and out.ios == pytest.approx(80.0)


def test_buckets_qemu_refuses_are_refused() -> None:
    for bad in (
        lambda: Bucket(0),
        lambda: Bucket(100, burst=50),
        lambda: Bucket(100, burst_s=5),
        lambda: Bucket(100, burst=200, burst_s=0),
    ):
        with pytest.raises(ValueError):
            bad()


def test_without_a_series_the_burst_is_the_floor_ratio() -> None:
    b = recommend_bucket(Requirement(1.0, 512.0, 95.0), 1.2)
    assert b.rate == 120  # 114 rounded up to the next 10
    assert b.burst == int(120 * MIN_PEAK_RATIO) and b.burst_s == MIN_BURST_S
    assert recommend_bucket(0.0).rate == 10  # QEMU needs a rate; the floor of 10 IOPS


def test_the_shadows_peak_scales_like_its_p95() -> None:
    # A P95 of 20 and a peak 25x it: the burst is 25x the rate.
    shadow = [(float(t), 20.0) for t in range(1, 40)] + [(40.0, 500.0)]
    b = recommend_bucket(100.0, 1.0, shadow)
    assert b.rate == 100 and b.burst == 2500
    # Scaled 5x, the peak second is 2,500 I/Os, 2,400 over the rate: 1 s at the burst.
    assert b.burst_s == MIN_BURST_S
    # A wild peak is capped; a flat series still gets the floor.
    wild = shadow[:-1] + [(40.0, 20_000.0)]
    assert recommend_bucket(100.0, 1.0, wild).burst == int(100 * MAX_PEAK_RATIO)
    flat = [(float(t), 20.0) for t in range(1, 41)]
    assert recommend_bucket(100.0, 1.0, flat).burst == int(100 * MIN_PEAK_RATIO)


def test_a_long_burst_sets_the_length() -> None:
    # 20 s at 30x the P95 after 600 s of quiet (3 % of the time): scaled 10x,
    # 20 x (3,000 - 100) I/Os over the rate, which the burst rate holds for 20 s.
    shadow = [(float(t), 10.0) for t in range(1, 601)]
    shadow += [(600.0 + t, 300.0) for t in range(1, 21)]
    b = recommend_bucket(100.0, 1.0, shadow)
    assert b.burst == 3000 and b.burst_s == 20
    t = np.asarray([s[0] for s in shadow])
    x = np.asarray([s[1] for s in shadow]) * 10
    assert largest_backlog(t, x, 100.0) == pytest.approx(20 * 2900)
    # Ten times longer (still under 5 % of the time), it is held at the ceiling.
    longer = [(float(t), 10.0) for t in range(1, 8001)]
    longer += [(8000.0 + t, 300.0) for t in range(1, 201)]
    assert recommend_bucket(100.0, 1.0, longer).burst_s == MAX_BURST_S


def test_the_samples_order_and_the_margin_do_not_change_the_rule() -> None:
    shadow = [(float(t), float(5 + (t * 7) % 13)) for t in range(1, 60)]
    a = recommend_bucket(200.0, 1.5, shadow)
    assert recommend_bucket(200.0, 1.5, shadow[::-1]) == a
    assert recommend_bucket(300.0, 1.0, shadow) == a


@pytest.mark.parametrize(("need", "margin"), [(-1.0, 1.2), (float("nan"), 1.2), (10.0, 0.9)])
def test_bad_needs_and_margins_are_refused(need: float, margin: float) -> None:
    with pytest.raises(ValueError):
        recommend_bucket(need, margin)
