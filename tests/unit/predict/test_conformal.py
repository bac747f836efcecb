"""Conformal margins: coverage on exchangeable data, Mondrian strata with a
fallback, and calibration splits that never put a job on both sides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vmshadow.predict.conformal import (
    MIN_CASES,
    ConformalMargin,
    conformal_quantile,
    rank_down,
    rank_up,
    scores,
    strata,
)
from vmshadow.predict.features import FEATURES
from vmshadow.predict.sar import Floats


def rows(n: int, target_vcpus: float, gib_per_vcpu: float, shadow_vcpus: float = 2) -> Floats:
    x = np.zeros((n, len(FEATURES)))
    x[:, FEATURES.index("shadow_vcpus")] = shadow_vcpus
    x[:, FEATURES.index("target_vcpus")] = target_vcpus
    x[:, FEATURES.index("target_memory_gib")] = target_vcpus * gib_per_vcpu
    x[:, FEATURES.index("vcpu_ratio_log")] = math.log(target_vcpus / shadow_vcpus)
    return x


def test_coverage_is_close_to_the_target_on_exchangeable_data() -> None:
    rng = np.random.default_rng(0)
    misses = []
    for _ in range(400):
        upper = rng.uniform(1, 10, 400)
        req = upper * rng.lognormal(0, 0.3, 400)
        cal, new = slice(0, 300), slice(300, 400)
        m = ConformalMargin.fit(
            upper[cal],
            req[cal],
            np.full(300, np.inf),
            rows(300, 8, 4),
            [f"j{i}" for i in range(300)],
            0.05,
            mondrian=False,
        )
        misses.append(np.mean(req[new] > upper[new] * m.pooled))
    # Split conformal: at most 5 % on average, and not much less (n = 300).
    assert 0.04 <= float(np.mean(misses)) <= 0.054  # 0.0498 expected, +- MC noise


def test_quantile_is_the_finite_sample_rank_and_floored_at_one() -> None:
    s = np.arange(1.0, 20.0)  # 19 scores: the 19th is the 95 % rank
    assert conformal_quantile(s, 0.05) == 19.0
    assert conformal_quantile(s[:18], 0.05) == math.inf  # too few to promise 5 %
    assert conformal_quantile(np.full(50, 0.5), 0.05) == 1.0
    with pytest.raises(ValueError):
        conformal_quantile(s, 0)


def test_scores_count_a_requirement_above_capacity_as_uncoverable() -> None:
    s = scores(np.array([2.0, 0.0, 0.0, 4.0]), np.array([3.0, 0.0, 1.0, 5.0]), np.full(4, 4.5))
    assert list(s) == [1.5, 0.0, math.inf, math.inf]


def test_strata_come_from_sizes_not_names() -> None:
    x = np.vstack([rows(1, 8, 2), rows(1, 4, 2), rows(1, 8.4, 8)])
    fine, coarse = strata(x)
    assert coarse[0] != coarse[1] and fine[0] != fine[2]
    assert coarse[0] == coarse[2]  # 8 and 8.4 vCPUs over 2: the same ratio bucket


def test_each_stratum_gets_its_own_margin_and_a_small_one_falls_back() -> None:
    rng = np.random.default_rng(1)
    n = 400
    x = np.vstack([rows(n, 8, 4), rows(n, 4, 4), rows(MIN_CASES - 1, 8, 16)])
    spread = np.r_[np.full(n, 0.4), np.full(n, 0.05), np.full(MIN_CASES - 1, 1.0)]
    upper = np.ones(len(x))
    req = rng.lognormal(0, spread)
    groups = [f"j{i % 40}" for i in range(len(x))]
    m = ConformalMargin.fit(upper, req, np.full(len(x), np.inf), x, groups, 0.05)
    wide, narrow, small = m.margins(x[[0, n, 2 * n]])
    assert wide > narrow >= 1.0
    # The 8 -> 16 GiB/vCPU stratum has too few cases: it takes its ratio's margin,
    # which also holds the 8 -> 4 GiB/vCPU cases.
    ratio_only = strata(x[[2 * n]])[1][0]
    assert small == m.by_stratum[ratio_only]
    assert strata(x[[2 * n]])[0][0] not in m.by_stratum
    # Never seen at all (another shadow size): the pooled margin.
    assert m.margins(rows(1, 8, 4, shadow_vcpus=1))[0] == m.pooled
    # Each stratum meets the rate on its own calibration cases.
    for key, margin in m.by_stratum.items():
        inside = np.asarray(strata(x)[0 if "mem" in key else 1]) == key
        assert np.mean(req[inside] > margin) <= 0.05


def test_too_few_jobs_in_a_stratum_falls_back() -> None:
    x = rows(300, 8, 4)
    m = ConformalMargin.fit(
        np.ones(300), np.linspace(0.5, 2, 300), np.full(300, np.inf), x, ["a", "b"] * 150, 0.05
    )
    assert m.by_stratum == {} and m.margins(x[:1])[0] == m.pooled


def test_round_trips_through_a_dict() -> None:
    x = rows(200, 8, 4)
    groups = [f"j{i % 10}" for i in range(200)]
    m = ConformalMargin.fit(
        np.ones(200), np.linspace(0.5, 2, 200), np.full(200, 9.0), x, groups, 0.05
    )
    back = ConformalMargin.from_dict(m.as_dict())
    assert back == m
    assert list(back.margins(x[:3])) == list(m.margins(x[:3]))


def test_ranks_that_are_whole_numbers_survive_floating_point() -> None:
    assert (19 + 1) * (1 - 0.9) / 2 < 1  # what floor() saw
    assert rank_down((19 + 1) * (1 - 0.9) / 2) == 1
    assert rank_up((19 + 1) * (1 - (1 - 0.9) / 2)) == 19
    assert rank_up(18.5) == 19 and rank_down(18.5) == 18
    # 19 scores: the 95 % margin is the largest, not unreachable.
    assert conformal_quantile(np.linspace(1.0, 2.0, 19), 0.05) == 2.0
