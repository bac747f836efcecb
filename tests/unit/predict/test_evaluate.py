"""Grouped cross-validation: folds never leak a job; baselines beside the model."""

from __future__ import annotations

import numpy as np
import pytest

import vmshadow.predict.evaluate as ev
from vmshadow.domain.errors import ConfigError
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.history import HistoryRecord

# scikit-learn's gradient boosting asks joblib (loky) for the number of physical
# cores, which runs `lscpu` once per process.
pytestmark = pytest.mark.subprocess


def test_folds_never_share_a_job(
    records: list[HistoryRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[set[str], set[str]]] = []
    real = ev._fold

    def spy(train: Dataset, test: Dataset, *a: object, **k: object) -> None:
        seen.append((set(train.groups.tolist()), set(test.groups.tolist())))
        real(train, test, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ev, "_fold", spy)
    report = ev.evaluate(Dataset.of(records), folds=4, modes=("fixed",))
    assert len(seen) == 4
    for train_jobs, test_jobs in seen:
        assert train_jobs and test_jobs
        assert not train_jobs & test_jobs
    assert report["folds"] == 4


def test_report_holds_model_and_the_three_baselines(records: list[HistoryRecord]) -> None:
    report = ev.evaluate(Dataset.of(records), folds=4)
    # smallest -> largest: half of the synthetic records target 8 vCPUs
    assert report["tested"] == len(records) // 2
    for res in ("vcpus", "memory_mib", "iops"):
        row = report["resources"][res]
        methods = row["methods"]
        for name in ("model-fixed", "model-calibrated", "physical", "shadow", "linear"):
            m = methods[name]
            assert 0 <= m["under"] <= 1
            assert "rounded_under" in m
        assert methods["model-calibrated"]["margin"] >= 1
        assert set(row["target_met"]) == {"fixed", "calibrated"}
        # the synthetic target runs are one per record: nothing repeats, no noise
        hindsight = row["hindsight"]
        assert hindsight["groups_with_repeats"] == 0 and hindsight["margin"] == 1.0
    # the full VM is provisioned: never under for CPU and memory; IOPS unknown
    assert report["resources"]["vcpus"]["methods"]["full"]["under"] == 0
    assert report["resources"]["iops"]["methods"]["full"] is None


def test_recommendations_never_exceed_the_target(records: list[HistoryRecord]) -> None:
    data = Dataset.of(records)
    c = ev._Collected()
    mask = data.largest_targets()
    idx = np.arange(len(data))
    ev._fold(data.take(idx[~mask]), data.take(idx[mask]), c, 3.0, 0.05, ("fixed",))
    for method in ("model-fixed", "linear", "physical"):
        assert np.all(c.cat(c.rec, (method, "vcpus")) <= 8)


def test_one_job_is_not_enough(records: list[HistoryRecord]) -> None:
    one = [r for r in records if r.job == records[0].job]
    with pytest.raises(ConfigError, match="two jobs"):
        ev.evaluate(Dataset.of(one))
