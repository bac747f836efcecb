"""Out-of-distribution protocols: a held-out family is never trained on, and a
resampled history must hold the same pairs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

import vmshadow.predict.evaluate as ev
import vmshadow.predict.ood as ood
from vmshadow.domain.errors import ConfigError
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.history import HistoryRecord

pytestmark = pytest.mark.subprocess  # scikit-learn runs `lscpu` once per process


def two_families(history_of: Callable[..., list[HistoryRecord]]) -> list[HistoryRecord]:
    recs = history_of(jobs=8, per_job=4)
    other = [
        replace(
            r,
            target=replace(r.target, family="t", memory_mib=r.target.memory_mib * 2),
            target_run=f"t/{r.target_run}",
        )
        for r in recs
    ]
    return recs + other


def test_lofo_never_trains_on_the_held_out_family(
    history_of: Callable[..., list[HistoryRecord]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[set[str | None], set[str | None]]] = []
    real = ev._fold

    def spy(train: Dataset, test: Dataset, *a: object, **k: object) -> None:
        seen.append(
            ({r.target.family for r in train.records}, {r.target.family for r in test.records})
        )
        real(train, test, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ood, "_fold", spy)
    report = ood.evaluate_lofo(Dataset.of(two_families(history_of)))
    assert seen == [({"t"}, {"s"}), ({"s"}, {"t"})]
    assert set(report["by_family"]) == {"s", "t"}
    per = sum(r["tested"] for r in report["by_family"].values())
    assert report["overall"]["tested"] == per
    assert report["overall"]["resources"]["vcpus"]["methods"]["model-calibrated"] is not None


def test_lofo_needs_two_families(history_of: Callable[..., list[HistoryRecord]]) -> None:
    with pytest.raises(ConfigError, match="two families"):
        ood.evaluate_lofo(Dataset.of(history_of(jobs=4, per_job=4)))


def test_resampled_history_must_hold_the_same_pairs(
    history_of: Callable[..., list[HistoryRecord]],
) -> None:
    recs = history_of(jobs=6, per_job=4)
    data = Dataset.of(recs)
    with pytest.raises(ConfigError, match="same pairs"):
        ood.evaluate_resampled(data, Dataset.of(recs[::-1]))
    report = ood.evaluate_resampled(data, Dataset.of(recs), folds=3, modes=("fixed",))
    a = report["trained_1s"]["resources"]["vcpus"]["methods"]["model-fixed"]
    b = report["trained_resampled"]["resources"]["vcpus"]["methods"]["model-fixed"]
    # the same records both ways: the same models, the same figures
    assert a["under"] == b["under"] and np.isclose(a["waste"], b["waste"])
