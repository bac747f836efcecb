"""Parsers of tool output (captured from stress-ng 0.15.06 and fio 3.33) and of /proc."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmshadow.agent.procfs import (
    Sampler,
    mem_used_kib,
    parse_diskstats,
    parse_meminfo,
    parse_stat,
    parse_vmstat_faults,
    whole_disk_filter,
)
from vmshadow.agent.protocol import encode_message, message
from vmshadow.agent.tools import (
    ToolOutputError,
    parse_fio_json,
    parse_stress_ng_brief,
    parse_stress_ng_yaml,
)

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- stress-ng -------------------------------------------------------------------------


def test_stress_ng_yaml() -> None:
    m = parse_stress_ng_yaml(read("stress-ng-matrix.yaml"), "matrix")
    assert m["source"] == "yaml"
    assert m["stress_ng_version"] == "0.15.06"
    assert isinstance(m["bogo_ops"], int) and m["bogo_ops"] > 0
    assert isinstance(m["bogo_ops_per_s_real"], float)
    # Two workers: the usr+sys rate divides by CPU time summed over both, about half.
    assert m["bogo_ops_per_s_usr_sys"] < m["bogo_ops_per_s_real"]  # type: ignore[operator]
    assert set(m) >= {"wall_clock_s", "user_time_s", "system_time_s", "max_rss_kib"}


def test_stress_ng_yaml_without_the_stressor_fails_cleanly() -> None:
    with pytest.raises(ToolOutputError, match="no metrics for stressor 'cpu'"):
        parse_stress_ng_yaml(read("stress-ng-matrix.yaml"), "cpu")
    with pytest.raises(ToolOutputError):
        parse_stress_ng_yaml("", "cpu")


def test_stress_ng_brief_fallback_skips_miscellaneous_lines() -> None:
    m = parse_stress_ng_brief(read("stress-ng-matrix.log"), "matrix")
    y = parse_stress_ng_yaml(read("stress-ng-matrix.yaml"), "matrix")
    assert m["source"] == "brief"
    assert m["bogo_ops"] == y["bogo_ops"]
    with pytest.raises(ToolOutputError):
        parse_stress_ng_brief("stress-ng: info: [1] dispatching hogs: 1 cpu\n", "cpu")


@given(st.text(max_size=400))
def test_stress_ng_parsers_never_crash(text: str) -> None:
    for parse in (parse_stress_ng_yaml, parse_stress_ng_brief):
        try:
            metrics = parse(text, "cpu")
        except ToolOutputError:
            continue
        encode_message(message("phase_result", phase_id="p", kind="stress-ng", duration_s=1,
                               exit_code=0, metrics=metrics))  # fmt: skip


# -- fio -------------------------------------------------------------------------------


def test_fio_json_after_a_note_on_stdout() -> None:
    text = read("fio-randwrite-with-note.txt")
    assert text.startswith("note: both iodepth")
    m = parse_fio_json(text)
    assert m["fio_version"] == "fio-3.33"
    assert m["write_iops"] > 0  # type: ignore[operator]
    assert m["write_ios"] == m["total_ios"]
    assert m["read_ios"] == 0 and m["read_clat_p50_us"] is None  # no reads: no latency
    assert 0 < m["write_clat_p50_us"] <= m["write_clat_p99_us"]  # type: ignore[operator]


def test_fio_json_randrw_reports_both_directions_in_microseconds() -> None:
    raw = json.loads(read("fio-randrw.json"))
    m = parse_fio_json(read("fio-randrw.json"))
    job = raw["jobs"][0]
    assert m["read_ios"] == job["read"]["total_ios"]
    assert m["total_ios"] == job["read"]["total_ios"] + job["write"]["total_ios"]
    assert m["read_bw_bps"] == job["read"]["bw_bytes"]
    assert m["read_clat_p95_us"] == round(
        job["read"]["clat_ns"]["percentile"]["95.000000"] / 1000, 3
    )


def test_fio_job_error_and_garbage_fail_cleanly() -> None:
    raw = json.loads(read("fio-randrw.json"))
    raw["jobs"][0]["error"] = 5
    with pytest.raises(ToolOutputError, match="error 5"):
        parse_fio_json(json.dumps(raw))
    for text in ("", "fio: nope\n", "{not json\n", '{"jobs": []}\n'):
        with pytest.raises(ToolOutputError):
            parse_fio_json(text)


@given(st.text(max_size=300))
def test_fio_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ToolOutputError):
        parse_fio_json(text)


# -- /proc -----------------------------------------------------------------------------

STAT = """cpu  100 5 50 1000 40 3 2 7 11 0
cpu0 100 5 50 1000 40 3 2 7 11 0
intr 1 2 3
ctxt 4000
processes 812
procs_running 1
"""
VMSTAT = """nr_free_pages 75000
pgpgin 1234
pgfault 90000
pgmajfault 12
"""
MEMINFO = """MemTotal:         500000 kB
MemFree:          300000 kB
MemAvailable:     400000 kB
Buffers:            1000 kB
Cached:            50000 kB
SReclaimable:       4000 kB
"""
DISKSTATS = """   7       0 loop0 100 0 800 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   1       0 ram0 5 0 10 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 10 0 80 5 20 0 160 9 0 14 14 0 0 0 0 0 0
 254       1 vda1 9 0 72 5 20 0 160 9 0 14 14 0 0 0 0 0 0
 254      16 vdb 1 0 8 1 2 0 16 1 0 2 2 0 0 0 0 0 0
 253       0 dm-0 3 0 24 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""


def test_parse_stat_counts_everything_but_idle_and_iowait() -> None:
    cpu = parse_stat(STAT)
    assert cpu.total == 100 + 5 + 50 + 1000 + 40 + 3 + 2 + 7  # guest is inside user
    assert cpu.busy == cpu.total - 1000 - 40
    assert cpu.cpus == 1
    assert cpu.forks == 812  # the `processes` line: tasks created since boot


def test_vmstat_faults_and_a_file_without_them() -> None:
    assert parse_vmstat_faults(VMSTAT) == 90000
    assert parse_vmstat_faults("pgfault notanumber\nnr_free_pages 1\n") == 0


def test_mem_used_is_net_of_cache() -> None:
    info = parse_meminfo(MEMINFO)
    assert mem_used_kib(info) == 500000 - 300000 - 1000 - 50000 - 4000


def test_diskstats_sums_whole_disks_only(tmp_path: Path) -> None:
    for name in ("loop0", "ram0", "vda", "vdb", "dm-0"):
        (tmp_path / name).mkdir()
    d = parse_diskstats(DISKSTATS, whole_disk_filter(str(tmp_path)))
    assert (d.reads, d.writes, d.read_sectors, d.write_sectors) == (11, 22, 88, 176)
    # Without sysfs the name pattern gives the same answer.
    d2 = parse_diskstats(DISKSTATS, whole_disk_filter(str(tmp_path / "missing")))
    assert d2 == d


def test_sampler_turns_deltas_into_rates(tmp_path: Path) -> None:
    now = [100.0]
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "diskstats").write_text(DISKSTATS)
    (tmp_path / "vmstat").write_text(VMSTAT)
    sampler = Sampler(proc=str(tmp_path), sys_block=str(tmp_path / "none"), clock=lambda: now[0])
    (tmp_path / "stat").write_text(
        STAT.replace("cpu  100 5 50 1000", "cpu  175 5 50 1025").replace("812", "830")
    )
    (tmp_path / "vmstat").write_text(VMSTAT.replace("90000", "94000"))
    (tmp_path / "diskstats").write_text(
        DISKSTATS.replace("vdb 1 0 8 1 2 0 16", "vdb 3 0 24 1 6 0 48")
    )
    now[0] = 102.0
    s = sampler.sample()
    assert s["cpu_busy"] == pytest.approx(0.75)  # 75 busy of 100 jiffies on 1 CPU
    assert s["interval_s"] == pytest.approx(2.0)
    assert s["read_iops"] == 1.0 and s["write_iops"] == 2.0
    assert s["read_bps"] == 16 * 512 / 2 and s["write_bps"] == 32 * 512 / 2
    assert s["mem_used_kib"] == 145000 and s["mem_total_kib"] == 500000
    assert s["forks_ps"] == 9.0 and s["faults_ps"] == 2000.0
    assert sampler.sample()["cpu_busy"] == 0.0  # no jiffies passed: no busy


def test_sampler_on_this_host_produces_a_valid_sample() -> None:
    s = Sampler().sample()
    encode_message(message("sample", phase_id=None, t=0.0, **s))
