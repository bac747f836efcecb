"""The prediction engine against issue 4's and issue 18's yardsticks, on the
whole reference data (``../shared/data/lumos-aws``, beside the clone in CI):
the figures docs/prediction.md gives stay true, in distribution (5 folds
grouped by job) and out of it (leave one family out; the runs resampled to
5 s). A goal met is asserted; a goal not met is held at the level reported,
with why, so that a change that loses ground fails here.

About two minutes on 2 cores: three evaluations, each fold calibrating its
conformal margins on 3 families x 8 job folds, run side by side in worker
processes (``lumos_reports``), once for the whole module.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lumos_reports import PROTOCOLS

LUMOS = Path(__file__).parents[2].parent / "shared" / "data" / "lumos-aws"

pytestmark = pytest.mark.subprocess  # worker processes; scikit-learn runs `lscpu`


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    if not LUMOS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{LUMOS} is missing: CI has shared/ beside the clone")
        pytest.skip(f"{LUMOS} not here (shared/ is not beside this clone)")
    # spawn, not fork: the parent may hold OpenMP and libvirt threads.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(PROTOCOLS), mp_context=ctx) as pool:
        parts = [pool.submit(run, LUMOS) for run in PROTOCOLS]
        return {k: v for part in parts for k, v in part.result().items()}


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


# IOPS as a cap (rate, burst, burst length; predict.tokenbucket): the
# calibrated model's rate with the burst rule, replayed against each full VM's
# own series as recorded (1 s, also where the history was resampled to 5 s).
# Cases with more than 1 % of I/Os waiting, the goal (<= 5 %) met; measured
# 0.5 % grouped, 0.2 % lofo, 0.3 % 1s->5s, 4.9 % 5s->5s (a 5 s model predicts
# 5 s P95s, which 1 s bursts exceed). The unused share of the rate, held where
# it stands: 90.0 %, 91.0 %, 89.8 %, 85.8 % against the linear baseline's
# 94.5 % (91.4 % on 5 s runs). Its goal (half the baseline's) is out of reach
# for any bucket: Lumos I/O comes in bursts between idle seconds, and even a
# rate at each full VM's own mean IOPS, with a bucket holding its whole
# backlog, leaves 68.7 % unused.
REPLAY = [
    ("grouped", 0.91, 0.945),
    ("lofo", 0.92, 0.945),
    ("1s->5s", 0.905, 0.914),
    ("5s->5s", 0.865, 0.914),
]


@pytest.mark.parametrize(("protocol", "unused_max", "linear"), REPLAY)
def test_iops_cap_rarely_makes_io_wait(
    reports: dict[str, dict[str, Any]], protocol: str, unused_max: float, linear: float
) -> None:
    rp = reports[protocol]["resources"]["iops"]["replay"]
    assert (rp["cases"], rp["cases_without_series"]) == (1686, 0)
    m = rp["methods"]["model-calibrated"]
    assert m["cases_over_1pct"] <= rp["goal"]["cases_over_1pct_max"] == 0.05
    assert m["unused"] <= unused_max
    # Less unused than the linear baseline, which waits as rarely.
    assert rp["methods"]["linear"]["unused"] == pytest.approx(linear, abs=0.002)
    assert m["unused"] < rp["methods"]["linear"]["unused"]
    assert rp["methods"]["linear"]["cases_over_1pct"] <= 0.05
