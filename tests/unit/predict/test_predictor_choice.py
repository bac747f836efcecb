"""Which engine the controller and ``vmshadow plan`` use, and flavour rounding of any answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmshadow.config import Settings, load_settings
from vmshadow.controller.predictor_choice import LivePredictor, build_predictor
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.models import train
from vmshadow.predict.persist import save_models
from vmshadow.workloads.catalog import SMOKE

# scikit-learn asks joblib for the physical cores, which runs `lscpu`.
pytestmark = pytest.mark.subprocess

TARGET = Allocation(4, 4096)


def settings(tmp_path: Path, **over: object) -> Settings:
    s = load_settings(config_path=Path("/nonexistent"), environ={})
    return s.model_copy(update={"data_dir": tmp_path, **over})


def smoke_points(cpu: float = 0.9, mem: float = 300.0) -> list[UsagePoint]:
    out = []
    for i in range(20):
        out.append(UsagePoint(float(i), Source.HOST, "smoke-cpu", cpu, None, 30, 10, 1e5, 1e5))
        out.append(UsagePoint(float(i), Source.GUEST, "smoke-cpu", cpu, mem, 0, 0, 0, 0))
    return out


def ramp_points() -> list[UsagePoint]:
    """A web ramp whose steps cost 0.004 vCPU and ~1 MiB per request/s."""
    out = []
    for step, load in enumerate((25.0, 50.0, 100.0)):
        for i in range(10):
            t = step * 100 + i
            pid = f"s{step}-cpu"
            out.append(UsagePoint(t, Source.HOST, pid, load * 0.004, None, 5, 5, 1e4, 1e4))
            out.append(UsagePoint(t, Source.GUEST, pid, load * 0.004, 200 + load, 0, 0, 0, 0))
    return out


def test_without_a_model_smoke_uses_the_measured_usage_and_says_so(tmp_path: Path) -> None:
    p = build_predictor(settings(tmp_path))
    got = p.predict(smoke_points(), profile=SMOKE, load=None, target=TARGET)
    assert got.method == "shadow-measured"
    assert "no history model trained" in got.label


def test_with_a_model_smoke_uses_it_and_a_load_uses_the_ramp(
    tmp_path: Path, records: list[HistoryRecord]
) -> None:
    save_models(train(Dataset.of(records)), tmp_path / "models")
    p = build_predictor(settings(tmp_path))
    got = p.predict(smoke_points(), profile=SMOKE, load=None, target=TARGET)
    assert got.method == "quantile-model"
    assert got.history_size == len(records)
    got = p.predict(ramp_points(), profile="web", load=200, target=TARGET)
    assert got.method == "ramp-extrapolation"
    assert "history model not used" in got.label
    assert got.need.vcpus == pytest.approx(0.8, rel=0.05)  # 200 x 0.004


def test_too_little_history_is_not_used(tmp_path: Path, records: list[HistoryRecord]) -> None:
    save_models(train(Dataset.of(records[:10])), tmp_path / "models")
    p = build_predictor(settings(tmp_path))
    assert p.model is None
    got = p.predict(smoke_points(), profile=SMOKE, load=None, target=TARGET)
    assert got.method == "shadow-measured"
    assert "10 records" in got.label


def test_flavours_round_every_engine(tmp_path: Path) -> None:
    csv = tmp_path / "flavours.csv"
    csv.write_text("name,vcpus,memory_mib,price\nsmall,1,1024,0.01\nmedium,2,2048,0.02\n")
    p = build_predictor(settings(tmp_path, flavours_file=csv))
    got = p.predict(smoke_points(cpu=0.9, mem=300), profile=SMOKE, load=None)
    # 0.9 vCPU x 1.2 = 1.08 -> 2 vCPUs; 300 MiB x 1.2 fits in 1 GiB: medium is the cheapest cover
    assert got.detail["flavour"] == "medium"
    assert (got.recommended.vcpus, got.recommended.memory_mib) == (2, 2048)
    assert "flavour medium" in got.label
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("name,vcpus,memory_mib\nnano,1,256\n")
    p = build_predictor(settings(tmp_path, flavours_file=tiny))
    got = p.predict(smoke_points(), profile=SMOKE, load=None)
    assert got.detail["flavour"] is None
    assert got.recommended.vcpus == 2  # rounded instead


def test_an_unreadable_flavour_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        build_predictor(settings(tmp_path, flavours_file=tmp_path / "missing.csv"))
    assert exc.value.field == "--flavours"


def test_live_predictor_picks_up_a_model_trained_while_it_runs(
    tmp_path: Path, records: list[HistoryRecord]
) -> None:
    live = LivePredictor(settings(tmp_path))
    assert live.predict(smoke_points(), profile=SMOKE, load=None).method == "shadow-measured"
    save_models(train(Dataset.of(records)), tmp_path / "models")
    meta = tmp_path / "models" / "models.json"
    os.utime(meta, (meta.stat().st_atime, meta.stat().st_mtime + 5))
    got = live.predict(smoke_points(), profile=SMOKE, load=None, target=TARGET)
    assert got.method == "quantile-model"
