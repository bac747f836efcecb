"""The calibrated margin is the smallest that meets the target rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmshadow.predict.margin import calibrate_margin


def test_smallest_meeting_the_target() -> None:
    p90 = np.ones(100)
    req = np.linspace(0.5, 1.5, 100)
    m, ok = calibrate_margin(p90, req, np.full(100, math.inf), 0.05)
    assert ok
    assert np.mean(req > p90 * m) <= 0.05
    assert np.mean(req > p90 * (m - 0.01)) > 0.05


def test_never_below_one_and_unreachable_is_said() -> None:
    assert calibrate_margin(np.full(10, 5.0), np.ones(10), np.full(10, math.inf)) == (1.0, True)
    # Capacity 1 and requirements of 2: no margin helps.
    m, ok = calibrate_margin(np.ones(10), np.full(10, 2.0), np.ones(10))
    assert not ok and m == 4.0


def test_rejects_a_rate_out_of_range() -> None:
    with pytest.raises(ValueError):
        calibrate_margin(np.ones(1), np.ones(1), np.ones(1), 1.5)


@given(
    st.lists(st.floats(0.1, 100), min_size=5, max_size=60),
    st.floats(0.0, 0.3),
    st.floats(0.5, 2.0),
)
def test_meets_the_rate_whenever_reachable(p90s: list[float], rate: float, spread: float) -> None:
    p90 = np.array(p90s)
    req = p90 * spread
    m, ok = calibrate_margin(p90, req, np.full(len(p90), math.inf), rate)
    if ok:
        assert np.mean(req > p90 * m) <= rate
