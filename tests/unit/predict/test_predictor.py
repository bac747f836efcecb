"""HistoryModelPredictor: the model when history backs it, the fallback when not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import (
    Prediction,
    Predictor,
    Requirement,
)
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.flavours import Flavour
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.measured import ShadowMeasuredPredictor
from vmshadow.predict.models import train
from vmshadow.predict.persist import save_models
from vmshadow.predict.predictor import HistoryModelPredictor

# scikit-learn's gradient boosting asks joblib (loky) for the number of physical
# cores, which runs `lscpu` once per process.
pytestmark = pytest.mark.subprocess

SHADOW = Allocation(2, 4096)
TARGET = Allocation(8, 16384)


def points(cpu: float = 1.9, mem: float = 1600.0, n: int = 30) -> list[UsagePoint]:
    out = []
    for i in range(n):
        out.append(UsagePoint(float(i), Source.HOST, "p", cpu, None, 40, 20, 1e5, 1e5))
        out.append(UsagePoint(float(i), Source.GUEST, "p", cpu, mem, 0, 0, 0, 0))
    return out


@pytest.fixture
def trained(records: list[HistoryRecord], tmp_path: Path) -> HistoryModelPredictor:
    save_models(train(Dataset.of(records)), tmp_path)
    return HistoryModelPredictor.load(tmp_path, shadow=SHADOW)


def test_is_a_predictor(trained: HistoryModelPredictor) -> None:
    p: Predictor = trained  # the controller's port, checked by mypy
    got = p.predict(points(), profile="web", load=10, target=TARGET)
    assert isinstance(got, Prediction)


def test_model_prediction_says_what_and_how_much_history(
    trained: HistoryModelPredictor, records: list[HistoryRecord]
) -> None:
    got = trained.predict(points(), profile="web", load=None, target=TARGET)
    assert got.method == "quantile-model"
    assert got.history_size == len(records)
    assert f"{len(records)} history records from 8 jobs" in got.label
    assert got.recommended.vcpus <= TARGET.vcpus  # cut to the requested size
    assert got.recommended.memory_mib % 256 == 0
    med, p90 = got.detail["median"], got.detail["p90"]
    assert isinstance(med, dict) and isinstance(p90, dict)
    assert p90["memory_mib"] >= med["memory_mib"]
    assert got.need.memory_mib == pytest.approx(p90["memory_mib"], abs=0.1)
    assert got.detail["profile"] == "web"


def test_need_never_exceeds_the_requested_size(trained: HistoryModelPredictor) -> None:
    # A saturated 2-vCPU shadow asked for a 3-vCPU VM: the model's ratio says more
    # than 3 busy vCPUs, which a 3-vCPU VM cannot use.
    small = Allocation(3, 16384)
    got = trained.predict(points(cpu=2.0), profile="web", load=None, target=small)
    med, p90 = got.detail["median"], got.detail["p90"]
    assert isinstance(med, dict) and isinstance(p90, dict)
    assert got.need.vcpus <= small.vcpus
    assert med["vcpus"] <= small.vcpus
    assert p90["vcpus"] == pytest.approx(small.vcpus)  # capped, not merely small
    assert got.recommended.vcpus == small.vcpus


def test_without_history_physical_extrapolation(tmp_path: Path) -> None:
    p = HistoryModelPredictor.load(tmp_path / "none", shadow=SHADOW)
    got = p.predict(points(cpu=1.95), profile="web", load=None, target=TARGET)
    assert got.method == "physical-extrapolation"
    assert got.history_size == 0
    assert "no history" in got.label
    assert got.need.vcpus == pytest.approx(1.95 * 4)
    assert got.recommended.vcpus == 8  # 7.8 x 1.2, cut to the 8 asked for
    assert got.detail["capped_at_request"] == ["vcpus"]


def test_fallback_predictor_is_used_and_labelled(tmp_path: Path) -> None:
    p = HistoryModelPredictor(None, SHADOW, fallback=ShadowMeasuredPredictor())
    got = p.predict(points(), profile="web", load=None, target=TARGET)
    assert got.method == "shadow-measured"
    assert "no history model" in got.label


def test_without_a_target_predicts_for_the_shadow(trained: HistoryModelPredictor) -> None:
    got = trained.predict_from(Requirement(1.0, 1000, 50), {}, target=None)
    assert got.recommended.vcpus <= SHADOW.vcpus
    assert "shadow's own size" in str(got.detail["note"])


def test_flavour_rounding(trained: HistoryModelPredictor) -> None:
    flavours = (
        Flavour("small", 2, 4096, 0.05),
        Flavour("wide", 8, 8192, 0.20),
        Flavour("huge", 8, 65536, 0.90),
    )
    p = dataclasses.replace(trained, flavours=flavours)
    got = p.predict(points(mem=1600), profile="web", load=None, target=TARGET)
    chosen = got.detail["flavour"]
    assert chosen in ("wide", "huge")
    padded_mem = got.need.memory_mib * got.detail["margins"]["memory_mib"]  # type: ignore[index]
    assert got.recommended.memory_mib >= padded_mem
    if padded_mem <= 8192:
        assert chosen == "wide"  # the cheapest that covers all three
    none_fit = dataclasses.replace(trained, flavours=(Flavour("x", 1, 512, 0.01),))
    got = none_fit.predict(points(), profile="web", load=None, target=TARGET)
    assert got.detail["flavour"] is None
    assert "rounded instead" in str(got.detail["flavour_note"])
