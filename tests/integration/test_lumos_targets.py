"""The prediction engine against issue 4's and issue 18's yardsticks, on the
whole reference data (``../shared/data/lumos-aws``, beside the clone in CI):
the figures docs/prediction.md gives stay true, in distribution (5 folds
grouped by job) and out of it (leave one family out; the runs resampled to
5 s). A goal met is asserted; a goal not met is held at the level reported,
with why, so that a change that loses ground fails here.

Several minutes on 2 cores: three evaluations, each fold calibrating its
conformal margins on 3 families x 8 job folds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vmshadow.predict.dataset import Dataset
from vmshadow.predict.evaluate import evaluate
from vmshadow.predict.history import import_sar_history
from vmshadow.predict.ood import evaluate_lofo, import_resampled
from vmshadow.predict.vmtypes import read_catalog

LUMOS = Path(__file__).parents[2].parent / "shared" / "data" / "lumos-aws"

pytestmark = pytest.mark.subprocess  # scikit-learn runs `lscpu` once per process


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    if not LUMOS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{LUMOS} is missing: CI has shared/ beside the clone")
        pytest.skip(f"{LUMOS} not here (shared/ is not beside this clone)")
    catalog = read_catalog(LUMOS / "vm-types.csv")
    history = import_sar_history(LUMOS, catalog)
    assert history.runs == 1882 and len(history.records) == 3381
    one = Dataset.of(history.records)
    five = Dataset.of(import_resampled(LUMOS, catalog).records)
    grouped = evaluate(one, rescored=five)
    return {
        "grouped": grouped,
        "lofo": evaluate_lofo(one)["overall"],
        "1s->5s": grouped["rescored"],
        "5s->5s": evaluate(five),
    }


def allowed(r: dict[str, Any]) -> float:
    assert r["cheapest_baseline"] == "linear"
    return float(r["cheapest_baseline_waste"]) / 2


def figures(reports: dict[str, dict[str, Any]], protocol: str, res: str) -> tuple[float, float]:
    m = reports[protocol]["resources"][res]["methods"]["model-calibrated"]
    return float(m["under"]), float(m["waste"])


def test_cases_scored(reports: dict[str, dict[str, Any]]) -> None:
    for protocol in ("grouped", "lofo", "1s->5s", "5s->5s"):
        assert reports[protocol]["tested"] == 1686, protocol


# The goals met: (protocol, resource).
MET = [("grouped", "memory_mib"), ("1s->5s", "memory_mib"), ("5s->5s", "memory_mib")]


@pytest.mark.parametrize(("protocol", "res"), MET)
def test_goals_met(reports: dict[str, dict[str, Any]], protocol: str, res: str) -> None:
    r = reports[protocol]["resources"][res]
    under, waste = figures(reports, protocol, res)
    assert under <= 0.05 and waste <= allowed(r)
    assert r["target_met"]["calibrated"]


# Not met, held where they stand (under, waste as measured; see docs/prediction.md).
NOT_MET = [
    # vCPU: under-provisioning holds, waste does not reach half the linear
    # baseline's (13.75 % in distribution): measured 3.7 % / 14.8 %. The 2-vCPU
    # shadow is saturated, and the margins calibrated with families held out
    # (which memory needs on new hardware) cost about a point of waste.
    ("grouped", "vcpus", 0.05, 0.155),
    ("lofo", "vcpus", 0.05, 0.17),  # 3.0 % / 16.1 % against 13.75 %
    # Memory on a held-out family: 6.0 % under (12.9 % with margins calibrated
    # on seen families only); m5 alone 11.2 %, c5 0.6 %, r5 5.9 %.
    ("lofo", "memory_mib", 0.07, 0.135),
    # A model trained at 1 s predicts 1 s P95s: on 5 s runs it over-provisions
    # (2.4 % / 30.8 % against 20.3 % allowed).
    ("1s->5s", "vcpus", 0.05, 0.32),
    # Trained and scored at 5 s: 5.9 % / 21.1 % against 20.3 %.
    ("5s->5s", "vcpus", 0.065, 0.22),
]


@pytest.mark.parametrize(("protocol", "res", "under_max", "waste_max"), NOT_MET)
def test_goals_not_met_stay_where_reported(
    reports: dict[str, dict[str, Any]], protocol: str, res: str, under_max: float, waste_max: float
) -> None:
    under, waste = figures(reports, protocol, res)
    assert under <= under_max and waste <= waste_max


def test_iops_beats_the_baselines_but_not_run_to_run_noise(
    reports: dict[str, dict[str, Any]],
) -> None:
    r = reports["grouped"]["resources"]["iops"]
    calibrated = r["methods"]["model-calibrated"]
    assert calibrated["under"] <= 0.05
    # Well below the linear baseline's 75 % waste. The goal (half of it) is above
    # even the hindsight reference, told every job/input/type's typical P95 IOPS.
    assert calibrated["waste"] < r["cheapest_baseline_waste"] * 0.8
    assert r["hindsight"]["under"] <= 0.05
    assert r["hindsight"]["waste"] > allowed(r)
