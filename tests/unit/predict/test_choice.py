"""Which registered engine the controller and ``vmshadow plan`` use, and flavour
rounding of any answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from launch_history import launch_records

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.choice import LivePredictor, build_predictor, engine_for
from vmshadow.predict.correction import train_correction
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.models import train
from vmshadow.predict.persist import save_correction, save_models
from vmshadow.predict.registry import ENGINES, Setup, build
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
    assert "no learned correction trained; it needs 20 history records" in got.label
    assert got.need.vcpus == pytest.approx(0.8, rel=0.05)  # 200 x 0.004
    assert got.detail["history_count"] == 0


def test_too_little_history_is_not_used(tmp_path: Path, records: list[HistoryRecord]) -> None:
    save_models(train(Dataset.of(records[:10])), tmp_path / "models")
    p = build_predictor(settings(tmp_path))
    assert "quantile-model" not in p.available
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


def test_the_registry_names_every_engine_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    assert set(ENGINES) == {
        "shadow-measured",
        "ramp-extrapolation",
        "ramp+learned-correction",
        "quantile-model",
    }
    setup = Setup(margin=1.2, shadow=Allocation(1, 512), models_dir=tmp_path)
    assert build("ramp-extrapolation", setup).engine is not None
    assert build("ramp+learned-correction", setup).engine is None
    with pytest.raises(ValueError, match="no engine 'psychic'"):
        build("psychic", setup)


def test_a_load_takes_the_correction_only_when_it_is_there() -> None:
    everything = dict.fromkeys(ENGINES, object())
    assert engine_for("web", 200, everything) == "ramp+learned-correction"  # type: ignore[arg-type]
    assert engine_for("web", 200, {}) == "ramp-extrapolation"
    assert engine_for(SMOKE, None, everything) == "quantile-model"  # type: ignore[arg-type]
    assert engine_for(SMOKE, None, {}) == "shadow-measured"
    # The quantile model answers the same work on a larger VM, never a load.
    assert engine_for(SMOKE, 10, everything) == "shadow-measured"  # type: ignore[arg-type]


def test_with_enough_launches_a_load_is_corrected_and_says_by_what(tmp_path: Path) -> None:
    save_correction(train_correction(launch_records()), tmp_path / "models")
    p = build_predictor(settings(tmp_path))
    ramp = build_predictor(settings(tmp_path / "empty")).predict(
        ramp_points(), profile="web", load=200, target=TARGET
    )
    got = p.predict(ramp_points(), profile="web", load=200, target=TARGET)
    assert got.method == "ramp+learned-correction"
    assert got.label.startswith("ramp+learned-correction: physical extrapolation from 3 ramp")
    assert "48 history records (48 completed loaded launches)" in got.label
    assert got.detail["extrapolated"] == ramp.need.as_dict()  # uncorrected, for the history
    assert got.detail["history_count"] == 48 == got.history_size
    # The history's ramp over-stated vCPUs by 1/0.9: the correction's median says so.
    median = got.detail["median"]
    assert isinstance(median, dict)
    assert median["vcpus"] == pytest.approx(0.9 * ramp.need.vcpus, rel=0.1)
    interval = got.detail["interval"]
    assert isinstance(interval, dict)
    lo, hi = interval["vcpus"]
    assert lo < median["vcpus"] < hi
    assert got.detail["interval_coverage"] == 0.9


def test_too_few_launches_leave_the_ramp_alone_and_say_how_many(tmp_path: Path) -> None:
    save_correction(train_correction(launch_records(jobs=6)), tmp_path / "models")
    base = settings(tmp_path)
    strict = base.controller.model_copy(update={"learned_min_history": 30})
    got = build_predictor(base.model_copy(update={"controller": strict})).predict(
        ramp_points(), profile="web", load=200, target=TARGET
    )
    assert got.method == "ramp-extrapolation"
    assert got.label.endswith("(24 history records; the learned correction needs 30)")
    assert got.detail["history_count"] == 0


def test_live_predictor_picks_up_a_correction_trained_while_it_runs(tmp_path: Path) -> None:
    live = LivePredictor(settings(tmp_path))
    assert live.predict(ramp_points(), profile="web", load=200).method == "ramp-extrapolation"
    save_correction(train_correction(launch_records()), tmp_path / "models")
    meta = tmp_path / "models" / "correction.json"
    os.utime(meta, (meta.stat().st_atime, meta.stat().st_mtime + 5))
    got = live.predict(ramp_points(), profile="web", load=200, target=TARGET)
    assert got.method == "ramp+learned-correction"


def test_a_bursty_shadow_gets_a_burst_over_its_iops_cap(tmp_path: Path) -> None:
    """Every engine's IOPS cap gets a burst shaped by the shadow's own series,
    and a smooth series a smaller one than a bursty series of the same P95."""

    def io_points(peak: float) -> list[UsagePoint]:
        # 95 seconds at 40 IOPS and 5 at ``peak``: the same P95, other bursts.
        return [
            UsagePoint(
                float(i), Source.HOST, "smoke-io", 0.5, None, peak if i % 20 == 0 else 40, 0, 1e4, 0
            )  # fmt: skip
            for i in range(100)
        ] + [
            UsagePoint(float(i), Source.GUEST, "smoke-io", 0.5, 300, 0, 0, 0, 0) for i in range(100)
        ]

    p = build_predictor(settings(tmp_path))
    smooth = p.predict(io_points(40), profile=SMOKE, load=None, target=TARGET)
    bursty = p.predict(io_points(2000), profile=SMOKE, load=None, target=TARGET)
    for got in (smooth, bursty):
        rec = got.recommended
        assert rec.iops and rec.iops_burst and rec.iops_burst >= rec.iops and rec.iops_burst_s
        assert got.detail["iops_bucket"] == {
            "rate": rec.iops,
            "burst": rec.iops_burst,
            "burst_s": rec.iops_burst_s,
        }
    assert bursty.recommended.iops_burst > smooth.recommended.iops_burst  # type: ignore[operator]
