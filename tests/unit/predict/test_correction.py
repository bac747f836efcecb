"""The learned correction of the ramp: what it learns, its coverage, its file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from launch_history import TRUE_RATIO, launch_records

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import RESOURCES, Requirement
from vmshadow.predict.correction import (
    CONFORMAL_MIN,
    PHYSICAL,
    RAMP,
    Cases,
    allocated,
    base_of,
    correction_row,
    short_scores,
    train_correction,
)
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.metrics import under_rate
from vmshadow.predict.persist import CORRECTION_META, load_correction, save_correction

# scikit-learn asks joblib for the physical cores, which runs `lscpu`.
pytestmark = pytest.mark.subprocess


def test_a_launch_is_compared_with_its_extrapolation_an_imported_pair_with_its_scaling(
    records: list[HistoryRecord],
) -> None:
    launch = launch_records(jobs=1, per_job=1)[0]
    assert base_of(launch) == (RAMP, launch.extrapolated)
    kind, base = base_of(records[0])
    assert kind == PHYSICAL
    # A shadow that was not short of memory needs on the large VM what it used.
    assert base.memory_mib == records[0].shadow.need.memory_mib
    cases = Cases.of([launch, records[0]])
    assert cases.kinds.tolist() == [RAMP, PHYSICAL]
    assert cases.x.shape[0] == 2


def test_it_learns_the_ratio_and_keeps_its_rate_on_launches_it_never_saw() -> None:
    train, test = launch_records(jobs=12, seed=1), launch_records(jobs=20, seed=2)
    c = train_correction(train)
    assert c.estimators is not None
    answers = []
    for r in test:
        assert r.extrapolated is not None
        x = correction_row(
            r.shadow.features,
            shadow_vcpus=1,
            shadow_memory_mib=512,
            base=r.extrapolated,
            kind=RAMP,
            beyond_ramp=r.beyond_ramp,
        )
        answers.append((r, c.predict(np.asarray(x), r.extrapolated)))
    under = {}
    for res in RESOURCES:
        rec, obs, ramp = [], [], []
        for r, got_all in answers:
            assert r.extrapolated is not None
            got = got_all[res]
            assert got["lo"] <= got["median"] <= got["p90"]
            ratio = got["median"] / float(getattr(r.extrapolated, res))
            assert ratio == pytest.approx(TRUE_RATIO[res], rel=0.1)
            rec.append(got["p90"] * c.margins[res])
            obs.append(float(getattr(r.observed, res)))
            ramp.append(float(getattr(r.extrapolated, res)) * 1.2)
        # Judged on what a VM gets: the margin is calibrated on that, floors
        # included (1 vCPU, 512 MiB, 10 IOPS).
        under[res] = under_rate(allocated(res, np.asarray(rec), np.asarray(obs)), np.asarray(obs))
        # The correction cuts the ramp's waste where it over-states, yet stays
        # within its rate on launches of jobs it never saw.
        assert np.mean(rec) < np.mean(ramp)
    assert max(under.values()) <= 0.1
    held = c.meta["held_out"]["resources"]
    assert held["vcpus"]["corrected"]["under"] <= 0.1
    assert 0.8 <= held["iops"]["interval_covered"] <= 1.0


def test_too_few_launches_train_nothing_and_say_why(records: list[HistoryRecord]) -> None:
    few = launch_records(jobs=CONFORMAL_MIN - 1, per_job=1)
    c = train_correction(few + records)  # imported pairs do not count for launches
    assert c.estimators is None
    assert c.ramp_records == CONFORMAL_MIN - 1
    assert c.meta["imported_records"] == len(records)
    assert "completed loaded launches" in c.meta["reason"]


def test_imported_pairs_help_the_fit_but_the_margin_is_calibrated_on_launches(
    records: list[HistoryRecord],
) -> None:
    c = train_correction(launch_records(jobs=8, per_job=3) + records)
    assert c.estimators is not None
    assert c.meta["held_out"]["records"] == 24
    assert c.records == 24 + len(records)
    assert all(math.isfinite(m) and m >= 1.0 for m in c.margins.values())


def test_saved_and_loaded_it_predicts_the_same(tmp_path: Path) -> None:
    c = train_correction(launch_records())
    meta = save_correction(c, tmp_path)
    assert meta["method"] == "learned-correction"
    back = load_correction(tmp_path)
    assert back is not None and back.estimators is not None
    x = np.asarray(
        correction_row(
            {}, shadow_vcpus=1, shadow_memory_mib=512, base=Requirement(1, 400, 50), kind=RAMP
        )
    )
    assert back.predict(x, Requirement(1, 400, 50)) == c.predict(x, Requirement(1, 400, 50))
    assert back.ramp_records == c.ramp_records


def test_a_correction_saved_for_other_features_is_refused(tmp_path: Path) -> None:
    save_correction(train_correction(launch_records(jobs=2, per_job=2)), tmp_path)
    meta = tmp_path / CORRECTION_META
    meta.write_text(meta.read_text().replace('"base_is_ramp"', '"something_else"'))
    with pytest.raises(ConfigError, match="retrain"):
        load_correction(tmp_path)


def test_nineteen_launches_the_fewest_allowed_save_a_finite_interval(tmp_path: Path) -> None:
    # (19 + 1) x (1 - 0.9) / 2 is 0.9999999999999998 in floating point: its
    # floor made the interval's lower bound -inf and `model train` crashed
    # writing it (found by the closed-loop e2e at exactly 19 launches).
    c = train_correction(launch_records(jobs=19, per_job=1))
    assert c.estimators is not None and c.ramp_records == CONFORMAL_MIN
    assert all(math.isfinite(b) for lo_hi in c.residuals.values() for b in lo_hi)
    save_correction(c, tmp_path)
    back = load_correction(tmp_path)
    assert back is not None and back.residuals == c.residuals


def test_an_interval_bound_too_few_launches_reach_is_saved_as_null(tmp_path: Path) -> None:
    c = train_correction(launch_records(jobs=19, per_job=1))
    c.residuals["iops"] = (-math.inf, math.inf)
    meta = save_correction(c, tmp_path)
    assert meta["residuals"]["iops"] == [None, None]
    back = load_correction(tmp_path)
    assert back is not None and back.residuals["iops"] == (-math.inf, math.inf)


def test_a_launch_within_the_least_allocation_is_never_short() -> None:
    up = np.asarray([0.0, 0.0, 0.2, 0.5])
    # 1 IOPS under a P90 of 0 (no cap) or within the 10-IOPS floor: never short.
    assert short_scores("iops", up, np.asarray([1.0, 40.0, 9.0, 20.0])).tolist() == [0, 0, 0, 40]
    # A vCPU need over the 1-vCPU floor under a P90 of 0: no margin covers it.
    vcpu = short_scores("vcpus", up, np.asarray([0.9, 1.5, 0.99, 2.0])).tolist()
    assert vcpu == [0, math.inf, 0, 4]
    got = allocated("iops", np.asarray([0.0, 3.0, 25.0]), np.asarray([7.0, 7.0, 7.0]))
    assert got.tolist() == [7.0, 10.0, 25.0]
