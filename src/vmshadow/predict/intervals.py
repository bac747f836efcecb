"""Ranges for a prediction's need: what every engine's ``Prediction.detail`` says
about how sure it is.

``interval`` holds per resource ``[lo, hi]``, a range for the *need* (before the
margin and the rounding); ``interval_coverage`` the share of cases such a range
is meant to hold; ``interval_basis`` how it was derived, in words, because the
engines' ranges do not rest on the same argument: the ramp's is the
measurement error of its steps carried through its fit (nominal, it cannot see
the error of extrapolating itself), the learned correction's is conformal on
held-out history (it can).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from vmshadow.domain.prediction import RESOURCES, Requirement

COVERAGE = 0.9
Z90 = 1.645  # two-sided 90 % quantile of the normal
# Two-sided 90 % Student t quantiles by degrees of freedom (scipy is no
# dependency of the engines); beyond the table the normal's is close enough.
_T90 = {1: 6.31, 2: 2.92, 3: 2.35, 4: 2.13, 5: 2.02, 6: 1.94, 7: 1.89, 8: 1.86, 9: 1.83}


def t90(df: int) -> float:
    return _T90.get(df, Z90) if df >= 1 else math.inf


def mean_half_width(values: Sequence[float]) -> float:
    """The 90 % half-width of the mean of ``values``. With fewer than two values
    nothing says how they scatter: the figure itself is taken as its error
    (a range from 0 to twice it), rather than an infinite one JSON cannot carry."""
    if len(values) < 2:
        return abs(values[0]) if values else 0.0
    return t90(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def interval_detail(
    lo: Mapping[str, float],
    hi: Mapping[str, float],
    *,
    basis: str,
    coverage: float = COVERAGE,
    history_count: int = 0,
) -> dict[str, object]:
    """The detail keys of the confidence contract (docs in ``domain.prediction``)."""
    # Rounded outwards, so the range still holds the figures it was made around.
    return {
        "interval": {
            r: [
                math.floor(max(0.0, float(lo[r])) * 1000) / 1000,
                math.ceil(max(float(lo[r]), float(hi[r]), 0.0) * 1000) / 1000,
            ]
            for r in RESOURCES
        },
        "interval_coverage": coverage,
        "interval_basis": basis,
        "history_count": history_count,
    }


def symmetric(need: Requirement, half: Mapping[str, float]) -> tuple[dict[str, float], ...]:
    """``need`` minus and plus a half-width per resource, as (lo, hi)."""
    lo = {r: float(getattr(need, r)) - half[r] for r in RESOURCES}
    hi = {r: float(getattr(need, r)) + half[r] for r in RESOURCES}
    return lo, hi
