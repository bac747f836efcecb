"""Reading sar CSV runs: columns by position, net memory, busy without iowait."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vmshadow.predict.sar import SarError, parse_time, read_sar, run_completed

MINI = Path(__file__).parents[2] / "data" / "lumos-mini"
REAL = MINI / "c5.large" / "spark_scan_tiny_1"

# As in sar -A: the disk device's tps first, the all-devices tps (before rtps) second.
HEADER = (
    "timestamp,%user,%iowait,%idle,tps,rd_sec/s,tps,rtps,wtps,bread/s,bwrtn/s,"
    "kbmemused,kbbuffers,kbcached\n"
)


def test_real_lumos_run() -> None:
    s = read_sar(REAL / "sar.csv", vcpus=2)
    lines = (REAL / "sar.csv").read_text().splitlines()
    assert s.seconds == len(lines) - 1
    first = dict(zip(lines[0].split(","), lines[1].split(","), strict=False))  # first tps wins
    busy = (100 - float(first["%idle"]) - float(first["%iowait"])) / 100 * 2
    assert s.busy_vcpus[0] == pytest.approx(busy)
    mem = (float(first["kbmemused"]) - float(first["kbbuffers"]) - float(first["kbcached"])) / 1024
    assert s.mem_used_mib[0] == pytest.approx(mem)
    total_tps = float(lines[1].split(",")[15])  # the second tps column: all devices
    assert s.iops[0] == pytest.approx(total_tps)
    req = s.requirement()
    assert 0 < req.vcpus <= 2
    assert req.memory_mib == pytest.approx(float(np.max(s.mem_used_mib)))
    assert req.iops == pytest.approx(float(np.percentile(s.iops, 95)))
    assert s.forks[0] == pytest.approx(float(first["proc/s"]))
    assert s.faults[0] == pytest.approx(float(first["fault/s"]))


def test_duplicate_tps_the_second_is_the_total(tmp_path: Path) -> None:
    f = tmp_path / "sar.csv"
    f.write_text(
        HEADER
        + "00:00:01,50,10,40,5,0,100,60,40,8,16,4096000,1024000,1024000\n"
        + "00:00:02,90,0,10,7,0,300,200,100,8,16,5120000,1024000,1024000\n"
    )
    s = read_sar(f, vcpus=2)
    assert list(s.busy_vcpus) == pytest.approx([1.0, 1.8])  # iowait is not busy
    assert list(s.iops) == [100, 300]  # not the disk device's 5 and 7
    assert list(s.read_iops) == [60, 200]
    assert list(s.read_bps) == [8 * 512, 8 * 512]
    assert s.requirement().memory_mib == pytest.approx((5120000 - 2048000) / 1024)
    assert s.requirement().iops == pytest.approx(100 + 0.95 * 200)


def test_without_tps_total_is_reads_plus_writes(tmp_path: Path) -> None:
    f = tmp_path / "sar.csv"
    f.write_text(
        "timestamp,%iowait,%idle,rtps,wtps,kbmemused,kbbuffers,kbcached\n"
        "1,0,50,3,4,2048,0,0\n"
        "2,0,50,5,6,2048,0,0\n"
    )
    s = read_sar(f, vcpus=4)
    assert list(s.iops) == [7, 11]
    assert list(s.read_bps) == [0, 0]
    assert s.forks.size == 0 and s.faults.size == 0  # not in this file: not measured


def test_repeated_headers_cut_and_bad_lines_are_skipped(tmp_path: Path) -> None:
    f = tmp_path / "sar.csv"
    row = "00:00:01,50,0,50,5,0,100,60,40,8,16,4096,0,0\n"
    not_a_number = "00:00:01,50,0,idle,5,0,100,60,40,8,16,4096,0,0\n"
    later = row.replace("00:00:01", "00:00:03")
    f.write_text(HEADER + row + HEADER + "00:00:02,50,0\n" + not_a_number + later)
    s = read_sar(f, vcpus=1)
    assert list(s.t) == [1, 3] and s.seconds == 4  # interval 2 s, from the timestamps


def test_time_from_timestamps_across_midnight_and_replays(tmp_path: Path) -> None:
    f = tmp_path / "sar.csv"
    row = ",50,0,50,5,0,100,60,40,8,16,4096,0,0\n"
    stamps = ["23:59:50", "23:59:55", "23:59:55", "00:00:00", "00:00:05", "00:00:03"]
    f.write_text(HEADER + "".join(s + row for s in stamps))
    s = read_sar(f, vcpus=1)
    # the step back (sar replaying) is dropped; a repeated second is jitter, kept
    assert list(s.t - s.t[0]) == [0, 5, 5, 10, 15]
    assert s.interval_s == 5 and s.seconds == 20


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12.5", 12.5), ("01:02:03", 3723), ("01:02:03 PM", 46923), ("12:00:00 AM", 0)],
)
def test_timestamp_forms(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds
    assert parse_time("soon") is None


def test_real_lumos_run_is_one_sample_per_second() -> None:
    s = read_sar(REAL / "sar.csv", vcpus=2)
    assert s.interval_s == 1 and s.seconds == s.busy_vcpus.size


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("timestamp,%idle\n1,2\n", "missing"),
        ("%idle,%iowait\n1,2\n", "'timestamp' missing"),
        (HEADER + "00:00:01,50,0,50,5,0,100,60,40,8,16,4096,0,0\n", "fewer than 2"),
    ],
)
def test_unreadable_files_say_why(tmp_path: Path, text: str, reason: str) -> None:
    f = tmp_path / "sar.csv"
    f.write_text(text)
    with pytest.raises(SarError, match=reason):
        read_sar(f, vcpus=1)
    with pytest.raises(SarError, match="cannot read"):
        read_sar(tmp_path / "none.csv", vcpus=1)


def test_report_completed(tmp_path: Path) -> None:
    r = tmp_path / "report.json"
    r.write_text('{"completed": true}')
    assert run_completed(r)
    r.write_text('{"completed": "False"}')
    assert not run_completed(r)
    r.write_text("{not json")
    with pytest.raises(SarError, match="not JSON"):
        run_completed(r)
    r.write_text("{}")
    with pytest.raises(SarError, match="completed"):
        run_completed(r)
