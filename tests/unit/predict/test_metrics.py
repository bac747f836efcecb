"""Quality measures on hand-computed cases, and their ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmshadow.predict.metrics import mdape, pinball, under_rate, waste


def test_hand_computed() -> None:
    rec = np.array([10.0, 10.0, 4.0, 8.0])
    req = np.array([5.0, 10.0, 5.0, 6.0])
    assert under_rate(rec, req) == 0.25  # only 4 < 5
    assert waste(rec, req) == pytest.approx((0.5 + 0.0 + 0.25) / 3)
    assert mdape(np.array([1.0, 3.0, 2.0]), np.array([2.0, 2.0, 0.0])) == pytest.approx(0.5)
    assert pinball(np.array([1.0]), np.array([2.0]), 0.9) == pytest.approx(0.9)
    assert pinball(np.array([3.0]), np.array([2.0]), 0.9) == pytest.approx(0.1)


def test_empty_and_all_under_are_nan_not_zero() -> None:
    assert math.isnan(under_rate(np.zeros(0), np.zeros(0)))
    assert math.isnan(waste(np.array([1.0]), np.array([2.0])))


values = st.lists(st.floats(0, 1e6), min_size=1, max_size=50)


@given(values, values)
def test_ranges(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    rec, req = np.array(a[:n]), np.array(b[:n])
    assert 0 <= under_rate(rec, req) <= 1
    w = waste(rec, req)
    assert math.isnan(w) or 0 <= w <= 1
    assert pinball(rec, req, 0.9) >= 0
