"""The hindsight reference: what run-to-run noise alone costs one margin for all."""

from __future__ import annotations

import numpy as np
import pytest

from vmshadow.domain.prediction import Requirement
from vmshadow.predict.history import HistoryRecord, ShadowRun, Size
from vmshadow.predict.noise import group_key, run_to_run

SHADOW = ShadowRun(Size(2, 4096, "s.large", "s"), Requirement(1.0, 1000.0, 50.0), {}, "s/1")
TARGET = Size(8, 16384, "s.2xlarge", "s")


def record(job: str, run: str, iops: float, shadow_run: str = "s/1") -> HistoryRecord:
    shadow = ShadowRun(SHADOW.size, SHADOW.need, {}, shadow_run)
    return HistoryRecord(
        source="test",
        job=job,
        shadow=shadow,
        target=TARGET,
        observed=Requirement(2.0, 2000.0, iops),
        observed_s=60.0,
        input="small",
        target_run=run,
    )


def reference(records: list[HistoryRecord], under: float = 0.0) -> dict[str, object]:
    req = np.asarray([r.observed.iops for r in records])
    return run_to_run(records, req, np.full(len(req), np.inf), eps=0.0, target_under=under)


def test_groups_whose_runs_agree_cost_nothing() -> None:
    recs = [record("a", f"r{i}", 100.0) for i in range(3)] + [record("b", "r1", 30.0)]
    h = reference(recs)
    assert h["margin"] == 1.0 and h["under"] == 0.0 and h["waste"] == 0.0
    assert h["groups"] == 2 and h["groups_with_repeats"] == 1
    assert h["spread_median"] == 1.0


def test_a_run_paired_with_several_shadows_counts_once() -> None:
    # runs of 100 and 400 IOPS, each paired with two shadow runs: the typical
    # need is their geometric mean, 200, and covering 400 takes x2
    recs = [
        record("a", run, iops, shadow)
        for run, iops in (("r1", 100.0), ("r2", 400.0))
        for shadow in ("s/1", "s/2")
    ]
    h = reference(recs)
    assert h["groups"] == 1 and h["spread_max"] == 4.0
    assert h["margin"] == 2.0 and h["under"] == 0.0
    assert h["waste"] == pytest.approx((0.75 + 0.0) / 2)


def test_the_under_budget_is_spent_on_the_outlier() -> None:
    # 20 runs, one far above the rest: with 5 % allowed under, it is left under
    # and the typical need (the geometric mean, 112 IOPS) covers the others
    recs = [record("a", f"r{i}", 100.0) for i in range(19)] + [record("a", "r19", 1000.0)]
    h = reference(recs, under=0.05)
    typical = 100 * 10 ** (1 / 20)
    assert h["margin"] == 1.0 and h["under"] == 0.05
    assert h["waste"] == pytest.approx((typical - 100) / typical, abs=1e-4)
    assert h["spread_median"] == 10.0


def test_groups_are_job_input_and_target_size() -> None:
    a = record("a", "r1", 1.0)
    other_input = HistoryRecord(**{**a.__dict__, "input": "large"})
    assert group_key(a) == ("a", "small", "s.2xlarge")
    assert group_key(other_input) != group_key(a)
