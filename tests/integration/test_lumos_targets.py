"""The prediction engine against issue 4's yardstick, on the whole reference data
(``../shared/data/lumos-aws``, beside the clone in CI): the figures README gives
stay true, so a change that loses the vCPU or memory target fails here.

About 40 s: it is the full ``vmshadow model evaluate`` (5 folds grouped by job,
each calibrating its margins on 8 inner folds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vmshadow.predict.dataset import Dataset
from vmshadow.predict.evaluate import evaluate
from vmshadow.predict.history import import_sar_history
from vmshadow.predict.vmtypes import read_catalog

LUMOS = Path(__file__).parents[2].parent / "shared" / "data" / "lumos-aws"

pytestmark = pytest.mark.subprocess  # scikit-learn runs `lscpu` once per process


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not LUMOS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{LUMOS} is missing: CI has shared/ beside the clone")
        pytest.skip(f"{LUMOS} not here (shared/ is not beside this clone)")
    history = import_sar_history(LUMOS, read_catalog(LUMOS / "vm-types.csv"))
    assert history.runs == 1882 and len(history.records) == 3381
    return evaluate(Dataset.of(history.records))


def allowed(r: dict[str, Any]) -> float:
    assert r["cheapest_baseline"] == "linear"
    return float(r["cheapest_baseline_waste"]) / 2


def test_vcpu_and_memory_meet_the_target(report: dict[str, Any]) -> None:
    assert report["tested"] == 1686
    for res in ("vcpus", "memory_mib"):
        r = report["resources"][res]
        calibrated = r["methods"]["model-calibrated"]
        assert calibrated["under"] <= 0.05, res
        assert calibrated["waste"] <= allowed(r), res
        assert r["target_met"]["calibrated"], res


def test_iops_beats_the_baselines_but_not_run_to_run_noise(report: dict[str, Any]) -> None:
    r = report["resources"]["iops"]
    calibrated = r["methods"]["model-calibrated"]
    assert calibrated["under"] <= 0.05
    # Well below the linear baseline's 75 % waste. The goal (half of it) is above
    # even the hindsight reference, told every job/input/type's typical P95 IOPS.
    assert calibrated["waste"] < r["cheapest_baseline_waste"] * 0.75
    assert r["hindsight"]["under"] <= 0.05
    assert r["hindsight"]["waste"] > allowed(r)
