"""sar runs and history pairs, on a subset of the real Lumos data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.evaluate import _pinball, _under_waste, calibrate_margin
from vmshadow.predict.history import import_runs, read_catalog, split_run_name
from vmshadow.predict.sar import read_sar

MINI = Path(__file__).parents[2] / "data" / "lumos-mini"


def test_sar_columns_by_position_and_net_memory(tmp_path: Path) -> None:
    csv = tmp_path / "sar.csv"
    csv.write_text(
        "timestamp,%user,%iowait,%idle,tps,rd_sec/s,tps,rtps,wtps,kbmemused,kbbuffers,kbcached\n"
        "00:00:01,50,10,40,5,0,100,60,40,4096000,1024000,1024000\n"
        "00:00:02,90,0,10,5,0,300,200,100,5120000,1024000,1024000\n"
        "timestamp,%user,%iowait,%idle,tps,rd_sec/s,tps,rtps,wtps,kbmemused,kbbuffers,kbcached\n"
    )
    u = read_sar(csv, vcpus=2)
    assert u.seconds == 2
    assert u.mean_vcpus == pytest.approx((1.0 + 1.8) / 2)  # iowait is not busy
    assert u.p95_iops == pytest.approx(100 + 0.95 * 200)  # the second tps: all devices
    assert u.peak_mem_mib == pytest.approx((5120000 - 2048000) / 1024)


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("hadoop_join_small_1", ("hadoop_join", "small")),
        ("hive_aggregationAVG_large", ("hive_aggregationAVG", "large")),
        ("spark_lr_huge_3", ("spark_lr", "huge")),
        ("justone", None),
    ],
)
def test_run_names(name: str, want: tuple[str, str] | None) -> None:
    assert split_run_name(name) == want


def test_import_pairs_smallest_with_larger_and_skips_incomplete() -> None:
    res = import_runs(MINI, read_catalog(MINI / "vm-types.csv"))
    assert res.skipped_incomplete == 1  # broken_job_tiny_9
    assert res.unreadable == {}
    assert res.pairs
    for p in res.pairs:
        assert p.shadow.vcpus < p.target.vcpus
        assert p.shadow.family == p.target.family
        assert "_tiny" not in p.job and "_small" not in p.job  # grouped at any input size
    targets = {p.target.name for p in res.pairs}
    assert targets == {"c5.xlarge", "c5.2xlarge"}


def test_group_folds_never_share_a_job() -> None:
    res = import_runs(MINI, read_catalog(MINI / "vm-types.csv"))
    groups = np.array([p.job for p in res.pairs])
    for tr, te in GroupKFold(n_splits=4).split(groups, groups=groups):
        assert not set(groups[tr]) & set(groups[te])


def test_bad_inputs_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        import_runs(tmp_path / "nope", read_catalog(MINI / "vm-types.csv"))
    assert caught.value.field == "--history"
    bad = tmp_path / "cat.csv"
    bad.write_text("name,cpus\nx,1\n")
    with pytest.raises(ConfigError) as caught:
        read_catalog(bad)
    assert caught.value.field == "--catalog"


def test_metrics_on_hand_computed_cases() -> None:
    rec = np.array([10.0, 10.0, 4.0, 8.0])
    req = np.array([5.0, 10.0, 5.0, 6.0])
    under, waste = _under_waste(rec, req)
    assert under == 0.25  # only 4 < 5
    assert waste == pytest.approx((0.5 + 0.0 + 0.25) / 3)
    assert _pinball(np.array([1.0]), np.array([2.0]), 0.9) == pytest.approx(0.9)
    assert _pinball(np.array([3.0]), np.array([2.0]), 0.9) == pytest.approx(0.1)


def test_calibrated_margin_is_the_smallest_meeting_the_target() -> None:
    p90 = np.ones(100)
    req = np.linspace(0.5, 1.5, 100)
    m = calibrate_margin(p90, req, 0.05)
    assert np.mean(req > p90 * m) <= 0.05
    assert np.mean(req > p90 * (m - 0.01)) > 0.05
