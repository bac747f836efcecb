"""Conformal margins: per resource, a multiplicative margin on the P90 with a
coverage argument, stratified (Mondrian) by what changes the error.

The score of a case is ``requirement / P90``, the P90 coming from a model that
never saw the case's job (cross-conformal: job-grouped folds, so that a job is
never on both the fitting and the calibration side; records of one job are not
independent, jobs are the unit that comes and goes). The margin for a target
under-provisioning rate ``a`` is the ``ceil((n + 1)(1 - a))``-th smallest of the
``n`` scores: for a new case exchangeable with them, ``P(req > P90 x margin) <= a``
(split conformal; with the fold models it holds up to the usual cross-conformal
slack, and the final model, trained on all the jobs, is if anything better than
the fold models the scores came from).

Mondrian strata make the rate hold within each stratum rather than on
average over a mix: the error of a VM twice the shadow is not that of one four
times it, and a family with much memory per vCPU fills it otherwise than one
with little. Strata are read from the feature row, never from names:

- ``ratio``: the target's vCPUs over the shadow's (a power of two bucket);
- ``mem``: the target's memory per vCPU (GiB, a power of two bucket): what a
  catalogue's families differ by;
- ``shadow``: the shadow's vCPUs.

A case takes the margin of the finest level whose stratum had enough
calibration cases (``MIN_CASES`` from ``MIN_JOBS`` jobs): ratio x memory per
vCPU x shadow, then ratio x shadow, then the pooled margin. A stratum the
calibration never saw (a new family, another shadow size) thus falls back to a
coarser one instead of borrowing another stratum's margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vmshadow.predict.features import FEATURES
from vmshadow.predict.sar import Floats

# A stratum's margin is its (1 - a)(n + 1)/n empirical quantile: at a = 5 % it
# exists from 19 cases, but is then the largest score. With 100 cases from 5
# jobs one job cannot set it alone (Lumos jobs have 10-60 pairs per target size).
MIN_CASES = 100
MIN_JOBS = 5
# Never below 1: the margin is a cushion over the P90, not a discount on it.
FLOOR = 1.0
# What a margin that no finite value reaches is reported as (req > capacity).
UNREACHED = math.inf

_SHADOW_VCPUS = FEATURES.index("shadow_vcpus")
_TARGET_VCPUS = FEATURES.index("target_vcpus")
_TARGET_GIB = FEATURES.index("target_memory_gib")
_RATIO = FEATURES.index("vcpu_ratio_log")


def _pow2(v: Floats) -> NDArray[np.int64]:
    """The nearest power of two's exponent: 3.7 and 4.2 vCPU ratios are one bucket."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.round(np.log2(np.where(v > 0, v, np.nan)))
    return np.asarray(np.nan_to_num(e, nan=-99), dtype=np.int64)


def strata(x: Floats) -> list[list[str]]:
    """Per level (finest first), each row's stratum key."""
    x = np.asarray(x, dtype=np.float64)
    ratio = _pow2(np.exp(x[:, _RATIO]))
    mem = _pow2(x[:, _TARGET_GIB] / np.maximum(x[:, _TARGET_VCPUS], 1e-9))
    shadow = _pow2(x[:, _SHADOW_VCPUS])
    coarse = [f"ratio=2^{r} shadow=2^{s}" for r, s in zip(ratio, shadow, strict=True)]
    fine = [f"{c} mem/vCPU=2^{m}" for c, m in zip(coarse, mem, strict=True)]
    return [fine, coarse]


def scores(upper: Floats, req: Floats, capacity: Floats) -> Floats:
    """``req / upper``: the smallest margin that would have covered each case;
    ``inf`` where none does (the requirement above the VM's capacity, or a P90
    of 0 under a positive requirement)."""
    upper = np.asarray(upper, dtype=np.float64)
    req = np.asarray(req, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(upper > 0, req / np.where(upper > 0, upper, 1.0), np.where(req > 0, np.inf, 0))
    return np.asarray(np.where(req > capacity, np.inf, s), dtype=np.float64)


# (n + 1) x a fraction is often a whole number that floating point misses by
# an ulp: (19 + 1) x (1 - 0.9) / 2 is 0.9999999999999998, whose floor drops a
# rank and makes a finite bound infinite. Ranks are rounded within this first.
RANK_TOLERANCE = 1e-9


def rank_up(x: float) -> int:
    """``ceil(x)``, but a hair above a whole number counts as that number."""
    return math.ceil(x - RANK_TOLERANCE)


def rank_down(x: float) -> int:
    """``floor(x)``, but a hair below a whole number counts as that number."""
    return math.floor(x + RANK_TOLERANCE)


def conformal_quantile(s: Floats, target_under: float) -> float:
    """The ``ceil((n + 1)(1 - a))``-th smallest score, at least ``FLOOR``;
    ``inf`` when there are too few scores for the rate asked."""
    if not 0 < target_under < 1:
        raise ValueError(f"target_under must be in (0, 1), got {target_under}")
    n = int(np.size(s))
    k = rank_up((n + 1) * (1 - target_under))
    if n == 0 or k > n:
        return UNREACHED
    return max(FLOOR, float(np.sort(s)[k - 1]))


@dataclass
class ConformalMargin:
    """One resource's margins: pooled, and per stratum where it had enough cases."""

    target_under: float
    pooled: float
    by_stratum: dict[str, float] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)  # calibration cases per stratum
    calibration_cases: int = 0

    @classmethod
    def fit(
        cls,
        upper: Floats,
        req: Floats,
        capacity: Floats,
        x: Floats,
        groups: Sequence[str] | NDArray[np.str_],
        target_under: float,
        *,
        mondrian: bool = True,
    ) -> ConformalMargin:
        """From held-out P90s (``upper``: made by models that never saw the job of
        the case) of the calibration cases ``x`` of jobs ``groups``."""
        s = scores(upper, req, capacity)
        out = cls(target_under, conformal_quantile(s, target_under), calibration_cases=s.size)
        if not mondrian:
            return out
        g = np.asarray(groups)
        for level in strata(x):
            keys = np.asarray(level)
            for key in sorted(set(level)):
                inside = keys == key
                n, jobs = int(inside.sum()), len(set(g[inside].tolist()))
                out.cases[key] = n
                if n >= MIN_CASES and jobs >= MIN_JOBS:
                    m = conformal_quantile(s[inside], target_under)
                    if math.isfinite(m):
                        out.by_stratum[key] = m
        return out

    def margins(self, x: Floats) -> Floats:
        """Each row's margin: its finest stratum calibrated, else the pooled one."""
        n = np.asarray(x).shape[0]
        out = np.full(n, self.pooled, dtype=np.float64)
        done = np.zeros(n, dtype=np.bool_)
        for level in strata(x):
            for i, key in enumerate(level):
                if not done[i] and key in self.by_stratum:
                    out[i], done[i] = self.by_stratum[key], True
        return out

    @property
    def reached(self) -> bool:
        return math.isfinite(self.pooled)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_under": self.target_under,
            "pooled": self.pooled if self.reached else None,
            "by_stratum": dict(sorted(self.by_stratum.items())),
            "cases": dict(sorted(self.cases.items())),
            "calibration_cases": self.calibration_cases,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformalMargin:
        pooled = d.get("pooled")
        return cls(
            target_under=float(d["target_under"]),
            pooled=UNREACHED if pooled is None else float(pooled),
            by_stratum={str(k): float(v) for k, v in d.get("by_stratum", {}).items()},
            cases={str(k): int(v) for k, v in d.get("cases", {}).items()},
            calibration_cases=int(d.get("calibration_cases", 0)),
        )
