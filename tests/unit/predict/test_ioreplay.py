"""IOPS recommendations replayed against the full VMs' own series, read back
from the data set a source names (tests/data/lumos-mini)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vmshadow.predict.dataset import Dataset
from vmshadow.predict.evaluate import evaluate
from vmshadow.predict.history import HistoryRecord, import_sar_history
from vmshadow.predict.ioreplay import replay_methods, run_series, source_folder
from vmshadow.predict.sar import read_sar
from vmshadow.predict.vmtypes import read_catalog

MINI = Path(__file__).parents[2] / "data" / "lumos-mini"


@pytest.fixture(scope="module")
def mini() -> list[HistoryRecord]:
    return import_sar_history(MINI, read_catalog(MINI / "vm-types.csv")).records


def test_source_names_lead_back_to_their_folder(tmp_path: Path) -> None:
    where = tmp_path.resolve()
    assert source_folder(f"lumos:{where}@0123abcd") == (where, None)
    assert source_folder(f"lumos-resampled-5s:{where}@0123abcd") == (where, 5.0)
    assert source_folder(f"lumos:{where / 'gone'}@0123abcd") is None
    for other in ("my-cloud", f"sysstat:{where}@0123abcd", f"lumos:{where}"):
        assert source_folder(other) is None


def test_series_are_the_runs_own(mini: list[HistoryRecord]) -> None:
    r = mini[0]
    assert r.target_run is not None and r.shadow.run is not None
    full = run_series(r, "target")
    assert full is not None
    sar = read_sar(MINI / r.target_run / "sar.csv", r.target.vcpus)
    assert np.array_equal(full[0], sar.t) and np.array_equal(full[1], sar.iops)
    assert run_series(dataclasses.replace(r, source="renamed"), "target") is None


def test_a_generous_cap_never_waits_and_a_stingy_one_does(mini: list[HistoryRecord]) -> None:
    observed = np.asarray([r.observed.iops for r in mini])
    report = replay_methods(mini, {"model-big": observed * 100 + 100, "linear": observed * 0 + 10})
    assert report is not None and report["cases"] == len(mini)
    big, tiny = report["methods"]["model-big"], report["methods"]["linear"]
    assert big["cases_over_1pct"] == 0 and big["waited_mean"] == 0
    assert big["unused"] > tiny["unused"]
    assert report["target_met"] == {"model-big": False}  # wasteful beside "linear"
    busy = [r.observed.iops > 50 for r in mini]
    assert any(busy) and tiny["cases_over_1pct"] > 0


def test_records_without_series_are_counted_not_replayed(mini: list[HistoryRecord]) -> None:
    moved = [dataclasses.replace(r, source="elsewhere") for r in mini[:3]] + mini[3:]
    rates = {"linear": np.full(len(moved), 1000.0)}
    report = replay_methods(moved, rates)
    assert report is not None
    assert (report["cases"], report["cases_without_series"]) == (len(mini) - 3, 3)
    assert replay_methods(moved[:3], {"linear": rates["linear"][:3]}) is None


@pytest.mark.subprocess  # scikit-learn runs `lscpu` once per process
def test_the_evaluation_reports_the_replay_beside_the_p95_figures(
    mini: list[HistoryRecord],
) -> None:
    report = evaluate(Dataset.of(mini), folds=2)
    iops = report["resources"]["iops"]
    assert iops["methods"]["model-calibrated"]["under"] is not None  # the P95 figures stay
    rp = iops["replay"]
    assert rp["cases"] == report["tested"] and rp["cases_without_series"] == 0
    assert {"model-fixed", "model-calibrated", "linear", "shadow"} <= set(rp["methods"])
    # The model's median as a rate too: what a burst could let the rate drop to.
    assert set(rp["target_met"]) == {"model-fixed", "model-calibrated", "model-median"}
    assert rp["goal"]["unused_max"] == pytest.approx(rp["methods"]["linear"]["unused"] / 2, 1e-3)
