"""Pairing shadow runs with full-VM runs, on a real subset of the Lumos data."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.history import LaunchRecord
from vmshadow.domain.prediction import Requirement
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionKind
from vmshadow.predict.history import (
    import_sar_history,
    shadow_summary,
    source_id,
    split_run_name,
)
from vmshadow.predict.vmtypes import read_catalog
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.history import NewSource
from vmshadow.store.repository import Store

MINI = Path(__file__).parents[2] / "data" / "lumos-mini"
CATALOG = read_catalog(MINI / "vm-types.csv")


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("hadoop_join_small_1", ("hadoop_join", "small")),
        ("hive_aggregationAVG_large", ("hive_aggregationAVG", "large")),
        ("hadoop_dfsioe-write_huge_3", ("hadoop_dfsioe-write", "huge")),
        ("justone", None),
        ("two_parts", None),
    ],
)
def test_run_names(name: str, want: tuple[str, str] | None) -> None:
    assert split_run_name(name) == want


def test_pairs_smallest_type_with_each_larger_type_of_its_family() -> None:
    res = import_sar_history(MINI, CATALOG)
    assert res.skipped_not_completed == 1  # broken_job_tiny_9
    assert res.unreadable == {}
    assert res.unknown_types == []
    fams = CATALOG.families()
    for r in res.records:
        assert r.shadow.size.type == fams[r.target.family or ""][0].name
        assert r.shadow.size.vcpus < r.target.vcpus
        assert r.input in ("tiny", "small")
        assert not r.job.endswith(("_tiny", "_small"))  # any input size: one job
        assert r.source == res.source.name if res.source else False
        assert r.shadow.interval_s == 1.0
        assert r.shadow.run and r.target_run
    by_family = {f: sum(r.target.family == f for r in res.records) for f in fams}
    # 14 job+inputs, one run each: c5 has two larger types here, m5 one, r5 none.
    assert by_family == {"c5": 28, "m5": 14, "r5": 0}
    assert res.jobs == 8


def test_unreadable_and_unknown_runs_are_counted_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for t in ("c5.large", "c5.2xlarge"):
        shutil.copytree(MINI / t / "spark_scan_tiny_1", root / t / "spark_scan_tiny_1")
    shutil.copytree(
        MINI / "c5.large" / "spark_join_tiny_1", root / "c5.large" / "spark_join_tiny_1"
    )
    (root / "c5.large" / "spark_join_tiny_1" / "sar.csv").write_text("timestamp\n")
    (root / "c5.large" / "oddname").mkdir()
    (root / "x9.huge").mkdir()
    res = import_sar_history(root, CATALOG)
    assert len(res.records) == 1
    assert "missing" in res.unreadable["c5.large/spark_join_tiny_1"]
    assert "name" in res.unreadable["c5.large/oddname"]
    assert res.unknown_types == ["x9.huge"]


def test_bad_folders_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        import_sar_history(tmp_path / "nope", CATALOG)
    assert caught.value.field == "--history"
    with pytest.raises(ConfigError, match="no usable"):
        import_sar_history(tmp_path, CATALOG)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    migrate(engine)
    return Store(engine)


def _launch(store: Store, shadow: dict[str, object]) -> LaunchRecord:
    """A finished launch's record (its transition must exist: a foreign key)."""
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name="web", profile="web", requested=Allocation(2, 2048)
    ).id
    return LaunchRecord(
        transition_id=tid,
        job="web@10",
        profile="web",
        load=10.0,
        shadow=shadow,
        target=Allocation(2, 2048),
        observed=Requirement(1.5, 400.0, 20.0),
        observed_s=600.0,
    )


def test_records_round_trip_through_the_store(store: Store) -> None:
    rec = import_sar_history(MINI, CATALOG).records[0]
    at = datetime.now(UTC)
    store.import_source(NewSource(rec.source, "lumos", None, None, at), [rec])
    (got,) = store.all_history()
    assert got.source == rec.source and got.job == rec.job and got.created_at == at
    assert set(got.shadow["need"]) == {"vcpus", "memory_mib", "iops"}
    assert got.target["type"] == rec.target.type
    back = got.record
    assert back is not None
    assert back.job == rec.job and back.target == rec.target
    assert back.observed.vcpus == pytest.approx(rec.observed.vcpus, abs=1e-3)
    assert back.shadow.features.keys() == rec.shadow.features.keys()


def test_entries_without_what_a_model_learns_from_are_not_records(store: Store) -> None:
    store.add_history(_launch(store, {"vcpus": 1, "memory_mib": 512, "need": None}))
    (got,) = store.all_history()
    assert got.record is None and got.observed == {"vcpus": 1.5, "memory_mib": 400.0, "iops": 20.0}


def test_sources_are_named_by_path_and_content(tmp_path: Path) -> None:
    res = import_sar_history(MINI, CATALOG)
    assert res.source is not None
    assert res.source.name == f"lumos:{MINI.resolve()}@{res.source.digest[:8]}"
    assert import_sar_history(MINI, CATALOG).source == res.source  # deterministic
    # A copy elsewhere: another name, the same content digest.
    copy = tmp_path / "lumos-mini"
    shutil.copytree(MINI, copy)
    other = import_sar_history(copy, CATALOG).source
    assert other is not None
    assert other.name != res.source.name and other.digest == res.source.digest
    # One byte changed: another digest.
    sar = copy / "c5.large" / "spark_scan_tiny_1" / "sar.csv"
    sar.write_text(sar.read_text() + "\n")
    changed = import_sar_history(copy, CATALOG).source
    assert changed is not None and changed.digest != res.source.digest
    long = source_id("lumos", tmp_path / ("x" * 300), "ab" * 32)
    assert len(long.name) <= 255 and long.name.endswith("x@abababab")
    assert source_id("lumos", MINI, "ab" * 32, "mine").name == "mine"
    with pytest.raises(ConfigError, match="--source"):
        source_id("lumos", MINI, "ab" * 32, " ")


def test_a_launch_with_the_shadow_summary_is_a_record(store: Store) -> None:
    points = [UsagePoint(float(t), Source.HOST, None, 0.8, 300.0, 5, 5, 0, 0) for t in range(20)]
    launch = _launch(store, shadow_summary(points, Allocation(1, 512)))
    store.add_history(launch)
    store.add_history(launch)  # a resumed controller's second try adds nothing
    (got,) = store.history()
    assert (got.source, got.transition_id, got.profile) == ("vmshadow", launch.transition_id, "web")
    assert got.target == {"vcpus": 2, "memory_mib": 2048, "iops": None}
    rec = got.record
    assert rec is not None and rec.load == 10.0
    assert rec.shadow.need.vcpus == pytest.approx(0.8)
    assert rec.shadow.features["cpu_saturated"] == 0.0
    assert rec.target.vcpus == 2
