"""User fio job files: the format, the allow-list, and errors naming the line and option."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmshadow.agent.phasespec import FioParams
from vmshadow.domain.errors import ConfigError
from vmshadow.workloads.catalog import ramp_plan
from vmshadow.workloads.fiojob import parse_fio_job, read_fio_job
from vmshadow.workloads.profiles import load_profile, parse_profile

DB = """\
; an OLTP-like job
[global]
ioengine=libaio
direct=1
time_based
runtime=60s

[db]
rw=randrw
rwmixwrite=30
bs=8k
iodepth = 8
numjobs=2
filename=/dev/vdb
size=512m
"""


def test_a_full_job_becomes_the_phase_parameters() -> None:
    job = parse_fio_job(DB, "db.fio")
    assert job.name == "db"
    assert job.params == FioParams(
        rw="randrw",
        bs_kib=8,
        iodepth=8,
        size_mib=512,
        direct=True,
        ioengine="libaio",
        numjobs=2,
        rwmixread=70,
    )
    # Accepted, but the ramp decides: said once each, not silently dropped.
    assert any(n.startswith("runtime") for n in job.notes)
    assert any(n.startswith("time_based") for n in job.notes)


def test_defaults_are_fios_own() -> None:
    p = parse_fio_job("[j]\n", "j.fio").params
    assert (p.rw, p.bs_kib, p.iodepth, p.ioengine, p.direct, p.numjobs) == (
        "read",
        4,
        1,
        "psync",
        False,
        1,
    )


def test_the_job_overrides_global_and_aliases_count_as_the_option() -> None:
    p = parse_fio_job("[global]\nbs=4k\n[j]\nblocksize=64k\nreadwrite=write\n", "j.fio").params
    assert (p.bs_kib, p.rw) == (64, "write")
    assert parse_fio_job("[j]\nbuffered=1\n", "j.fio").params.direct is False
    assert parse_fio_job("[j]\ndirect\n", "j.fio").params.direct is True
    assert parse_fio_job("[j]\nioengine=sync\n", "j.fio").params.ioengine == "sync"


def test_sizes_in_fio_units() -> None:
    for text, mib in (("1g", 1024), ("256M", 256), ("64MiB", 64), (str(2**20), 1)):
        assert parse_fio_job(f"[j]\nsize={text}\n", "j.fio").params.size_mib == mib
    for text in ("50%", "1t", "1000k", "0"):
        with pytest.raises(ConfigError, match=r"j.fio:2: size"):
            parse_fio_job(f"[j]\nsize={text}\n", "j.fio")


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[j]\nexec_prerun=rm\n", "j.fio:2: exec_prerun", "runs a command"),
        ("[j]\nexec_postrun=reboot\n", "j.fio:2: exec_postrun", "runs a command"),
        ("[j]\ntrigger-cmd=x\n", "j.fio:2: trigger-cmd", "runs a command"),
        ("[j]\nioengine=exec\n", "j.fio:2: ioengine", "runs or loads programs"),
        ("[j]\nioengine=external:/x.so\n", "j.fio:2: ioengine", "runs or loads programs"),
        ("[j]\nioengine=io_uring\n", "j.fio:2: ioengine", "must be one of"),
        ("[j]\nfilename=/etc/passwd\n", "j.fio:2: filename", "scratch disk /dev/vdb"),
        ("[j]\nfilename=/dev/vdb:/dev/vda\n", "j.fio:2: filename", "scratch disk"),
        ("[j]\ndirectory=/root\n", "j.fio:2: directory", "outside the scratch disk"),
        ("[j]\nopendir=/\n", "j.fio:2: opendir", "outside the scratch disk"),
        ("[j]\nwrite_lat_log=/tmp/x\n", "j.fio:2: write_lat_log", "log files"),
        ("[j]\nwrite_iolog=/tmp/x\n", "j.fio:2: write_iolog", "writes another file"),
        ("include evil.fio\n[j]\n", "j.fio:1: include", "another file"),
        ("[j]\nsize=${HOME}\n", "j.fio:2", "'$' expansion"),
        ("[j]\nsize=$((1+1))\n", "j.fio:2", "'$' expansion"),
        ("[j]\nrate_iops=500\n", "j.fio:2: rate_iops", "per_unit.iops"),
        ("[j]\nverify=md5\n", "j.fio:2: verify", "not an allowed option"),
        ("[j]\nbs=4k,8k\n", "j.fio:2: bs", "must be one of"),
        ("[j]\nbs=32k\n", "j.fio:2: bs", "must be one of"),
        ("[j]\nrw=randrw:8\n", "j.fio:2: rw", "must be one of"),
        ("[j]\niodepth=0\n", "j.fio:2: iodepth", "1..64"),
        ("[j]\nioengine=libaio\niodepth=65\n", "j.fio:3: iodepth", "1..64"),
        ("[j]\niodepth=8\n", "j.fio:2: iodepth", "must be 1 with ioengine 'psync'"),
        ("[j]\nnumjobs=17\n", "j.fio:2: numjobs", "1..16"),
        ("[j]\nrw=read\nrwmixread=70\n", "j.fio:3: rwmixread", "only applies to rw=randrw"),
        ("[j]\ndirect=yes\n", "j.fio:2: direct", "0 or 1"),
        ("[j]\nrw=read\nrw=write\n", "j.fio:3: rw", "given twice in [j] (also line 2)"),
        ("[j]\nname=a b\n", "j.fio:2: name", "one plain word"),
        ("[j]\nrw=read ; comment\n", "j.fio:2: rw", "no spaces, quotes or comments"),
        ("rw=read\n[j]\n", "j.fio:1: rw", "belong to a section"),
        ("[global]\nrw=read\n", "j.fio:1", "no job section"),
        ("[a]\n[a]\n", "j.fio:2: [a]", "one job per profile"),
        ("[a]\n[b]\n", "j.fio:2: [b]", "one job per profile"),
        ("[a]\n[global]\nbs=8k\n", "j.fio:2", "[global] after the job"),
        ("[a b]\n", "j.fio:1", "section header"),
        ("[j]\n=1\n", "j.fio:2", "not an option"),
        ("[j]\nrw=read\x00\n", "j.fio:2", "control characters"),
    ],
)
def test_refused_with_the_line_and_the_option(text: str, field: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_fio_job(text, "j.fio")
    assert info.value.field == field
    assert reason in info.value.reason


def test_duplicate_job_names_are_two_jobs_as_in_fio() -> None:
    # configparser would merge these (lax) or refuse the file with no line (strict).
    with pytest.raises(ConfigError, match=r"j.fio:4: \[db\]: one job per profile"):
        parse_fio_job("[db]\nrw=read\n\n[db]\nrw=write\n", "j.fio")


def test_size_limits() -> None:
    with pytest.raises(ConfigError, match="at most 16384 bytes"):
        parse_fio_job("[j]\n" + "; x\n" * 5000, "j.fio")
    with pytest.raises(ConfigError, match="at most 200 lines"):
        parse_fio_job("[j]\n" + "\n" * 300, "j.fio")


def test_read_fio_job_file(tmp_path: Path) -> None:
    (tmp_path / "a.fio").write_text(DB)
    assert read_fio_job(tmp_path / "a.fio").params.numjobs == 2
    with pytest.raises(ConfigError, match="cannot read"):
        read_fio_job(tmp_path / "missing.fio")


# -- in a profile ---------------------------------------------------------------------------
PROFILE = """\
name: mydb
unit: transactions/s
per_unit: {cpu_percent: 1, memory_mib: 0.1, iops: 3}
ramp: [10, 20]
"""


def test_inline_job_errors_point_at_the_profile_line() -> None:
    text = PROFILE + "fio_job: |\n  [db]\n  rw=randrw\n  exec_prerun=/bin/sh\n"
    with pytest.raises(ConfigError) as info:
        parse_profile(text, "my.yaml")
    # Line 8 of my.yaml is the exec_prerun line of the literal block.
    assert str(info.value).startswith("my.yaml:8: fio_job: exec_prerun: runs a command")


def test_quoted_inline_job_names_the_key_line_and_the_job_line() -> None:
    text = PROFILE + 'fio_job: "[db]\\nverify=md5\\n"\n'
    with pytest.raises(ConfigError, match=r"my.yaml:5: fio_job line 2: verify"):
        parse_profile(text, "my.yaml")


def test_inline_job_drives_the_io_phase_at_the_profiles_rate() -> None:
    text = PROFILE + "fio_job: |\n  [db]\n  rw=randrw\n  ioengine=libaio\n  iodepth=4\n"
    text += "  numjobs=2\n  bs=16k\n"
    p = parse_profile(text, "my.yaml")
    steps = ramp_plan(p, duration_s=5, shadow_memory_mib=512).phases
    io = steps[1][2].params  # load 20 x 3 IOPS = 60 in total, 30 per copy
    assert isinstance(io, FioParams)
    assert (io.rw, io.bs_kib, io.iodepth, io.numjobs, io.rate_iops) == ("randrw", 16, 4, 2, 30)


def test_job_file_next_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "db.fio").write_text(DB)
    (tmp_path / "p.yaml").write_text(PROFILE + "fio_job_file: db.fio\n")
    p = load_profile(str(tmp_path / "p.yaml"))
    assert p.fio is not None and p.fio.params.rwmixread == 70
    (tmp_path / "bad.fio").write_text("[j]\nexec_postrun=x\n")
    (tmp_path / "q.yaml").write_text(PROFILE + "fio_job_file: bad.fio\n")
    with pytest.raises(ConfigError, match=r"bad.fio:2: exec_postrun"):
        load_profile(str(tmp_path / "q.yaml"))


def test_job_file_must_stay_in_the_profiles_folder(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(PROFILE + "fio_job_file: ../etc.fio\n")
    with pytest.raises(ConfigError, match="fio_job_file"):
        load_profile(str(tmp_path / "r.yaml"))
    outside = tmp_path / "out"
    outside.mkdir()
    (outside / "x.fio").write_text("[j]\n")
    (tmp_path / "link.fio").symlink_to(outside / "x.fio")
    (tmp_path / "s.yaml").write_text(PROFILE + "fio_job_file: link.fio\n")
    with pytest.raises(ConfigError, match="must be in the profile's folder"):
        load_profile(str(tmp_path / "s.yaml"))


def test_a_job_file_needs_a_profile_file() -> None:
    with pytest.raises(ConfigError, match="only a profile read from a file"):
        parse_profile(PROFILE + "fio_job_file: db.fio\n", "my.yaml")


def test_io_and_a_fio_job_are_exclusive() -> None:
    text = PROFILE + "io: {rw: read}\nfio_job: |\n  [db]\n"
    with pytest.raises(ConfigError, match="give one of io, fio_job and fio_job_file"):
        parse_profile(text, "my.yaml")
