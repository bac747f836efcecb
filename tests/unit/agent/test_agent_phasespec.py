"""Phase specs: the valid space is accepted, each bad field is named, argv is allow-listed."""

from __future__ import annotations

import re
from typing import Any

import pytest
from agenttest_helpers import fio_params, phase_specs, stress_ng_params
from hypothesis import given
from hypothesis import strategies as st

from vmshadow.agent import phasespec as ps
from vmshadow.agent.phasespec import FioParams, PhaseSpec, StressNgParams
from vmshadow.agent.protocol import ProtocolError
from vmshadow.agent.tools import fio_argv, stress_ng_argv

SCRATCH = "/dev/vdb"
REPORT = "/tmp/vmshadow-x/report"

CPU = {"phase_id": "cpu", "kind": "stress-ng", "duration_s": 10,
       "params": {"stressor": "cpu", "workers": 1}}  # fmt: skip
VM = {"phase_id": "mem", "kind": "stress-ng", "duration_s": 10,
      "params": {"stressor": "vm", "workers": 1, "vm_bytes_mib": 256, "vm_keep": True}}  # fmt: skip
FIO = {"phase_id": "io", "kind": "fio", "duration_s": 10,
       "params": {"rw": "randrw", "bs_kib": 4, "iodepth": 16, "size_mib": 256,
                  "direct": True, "ioengine": "libaio"}}  # fmt: skip


def with_(base: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep-ish copy of ``base`` with ``path`` (a.b) set, or removed when value is DELETE."""
    out = {**base, "params": dict(base.get("params", {}))}
    *parents, leaf = path.split(".")
    target = out["params"] if parents else out
    if value is DELETE:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return out


DELETE = object()


@given(phase_specs())
def test_valid_specs_round_trip(spec: PhaseSpec) -> None:
    assert PhaseSpec.from_dict(spec.to_dict()) == spec


def test_profile_specs_are_valid() -> None:
    for d in (CPU, VM, FIO, {"phase_id": "base", "kind": "idle", "duration_s": 5}):
        assert PhaseSpec.from_dict(d).to_dict()["phase_id"] == d["phase_id"]


@pytest.mark.parametrize(
    ("base", "path", "value", "field"),
    [
        (CPU, "phase_id", "CPU", "phase_id"),
        (CPU, "phase_id", "", "phase_id"),
        (CPU, "phase_id", "a" * 33, "phase_id"),
        (CPU, "phase_id", "a/b", "phase_id"),
        (CPU, "phase_id", 5, "phase_id"),
        (CPU, "phase_id", DELETE, "phase_id"),
        (CPU, "kind", "bash", "kind"),
        (CPU, "duration_s", 0, "duration_s"),
        (CPU, "duration_s", 601, "duration_s"),
        (CPU, "duration_s", 1.5, "duration_s"),
        (CPU, "duration_s", True, "duration_s"),
        (CPU, "params", DELETE, "params"),
        (CPU, "params", [], "params"),
        (CPU, "colour", "red", "colour"),
        (CPU, "params.stressor", "fork", "params.stressor"),
        (CPU, "params.stressor", "cpu --vm 1", "params.stressor"),
        (CPU, "params.workers", 0, "params.workers"),
        (CPU, "params.workers", 65, "params.workers"),
        (CPU, "params.workers", "1", "params.workers"),
        (CPU, "params.workers", DELETE, "params.workers"),
        (CPU, "params.cpu_load", 0, "params.cpu_load"),
        (CPU, "params.cpu_load", 101, "params.cpu_load"),
        (CPU, "params.vm_keep", False, "params.vm_keep"),
        (CPU, "params.vm_bytes_mib", 10, "params.vm_bytes_mib"),
        (CPU, "params.timeout", 5, "params.timeout"),
        (VM, "params.cpu_load", 50, "params.cpu_load"),
        (VM, "params.vm_bytes_mib", 0, "params.vm_bytes_mib"),
        (VM, "params.vm_bytes_mib", 65537, "params.vm_bytes_mib"),
        (VM, "params.vm_bytes_mib", DELETE, "params.vm_bytes_mib"),
        (VM, "params.vm_keep", "yes", "params.vm_keep"),
        (FIO, "params.rw", "trim", "params.rw"),
        (FIO, "params.bs_kib", 5, "params.bs_kib"),
        (FIO, "params.bs_kib", True, "params.bs_kib"),
        (FIO, "params.iodepth", 0, "params.iodepth"),
        (FIO, "params.iodepth", 65, "params.iodepth"),
        (FIO, "params.size_mib", 0, "params.size_mib"),
        (FIO, "params.size_mib", 4097, "params.size_mib"),
        (FIO, "params.rate_iops", 0, "params.rate_iops"),
        (FIO, "params.direct", 1, "params.direct"),
        (FIO, "params.fsync", -1, "params.fsync"),
        (FIO, "params.fsync", 1025, "params.fsync"),
        (FIO, "params.ioengine", "io_uring", "params.ioengine"),
        (FIO, "params.ioengine", "psync", "params.iodepth"),  # psync caps depth at 1
        (FIO, "params.filename", "/etc/passwd", "params.filename"),
        (FIO, "params.rw", DELETE, "params.rw"),
    ],
)
def test_each_bad_field_is_rejected_by_name(
    base: dict[str, Any], path: str, value: object, field: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        PhaseSpec.from_dict(with_(base, path, value))
    assert info.value.code == "bad_field"
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}: ")


def test_idle_takes_no_params() -> None:
    with pytest.raises(ProtocolError, match=r"params\.workers: unknown field"):
        PhaseSpec.from_dict({"phase_id": "i", "kind": "idle", "duration_s": 1,
                             "params": {"workers": 1}})  # fmt: skip


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ProtocolError, match="params.workers"):
        StressNgParams("cpu", 0)
    with pytest.raises(ProtocolError, match="does not fit kind"):
        PhaseSpec("x", "fio", 5, StressNgParams("cpu", 1))
    with pytest.raises(ProtocolError, match="phase_id"):
        PhaseSpec("../x", "idle", 5)


@given(st.dictionaries(st.text(max_size=12), st.integers() | st.text(max_size=8) | st.booleans()))
def test_arbitrary_params_only_ever_raise_protocol_error(params: dict[str, object]) -> None:
    for kind in ps.KINDS:
        try:
            PhaseSpec.from_dict({"phase_id": "p", "kind": kind, "duration_s": 1, "params": params})
        except ProtocolError as exc:
            assert exc.code == "bad_field" and exc.field


# -- argv ------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+")


@given(stress_ng_params(), st.integers(*ps.DURATION_RANGE))
def test_stress_ng_argv_holds_only_allow_listed_words(p: StressNgParams, duration: int) -> None:
    argv = stress_ng_argv(p, duration, REPORT)
    fixed = {"stress-ng", "--cpu-load", "--vm-bytes", "--vm-keep", "--timeout",
             "--metrics-brief", "--yaml", REPORT, "--cpu-method", "int64",
             "--cpu-load-slice"}  # fmt: skip
    stressors = {f"--{s}" for s in ps.STRESSORS}
    for token in argv:
        assert (
            token in fixed
            or token in stressors
            or _NUMBER.fullmatch(token)
            or re.fullmatch(r"\d+[Ms]", token)
        ), token
    assert argv[0] == "stress-ng" and argv[1] == f"--{p.stressor}" and argv[2] == str(p.workers)
    assert argv[argv.index("--timeout") + 1] == f"{duration}s"


@given(fio_params(), st.integers(*ps.DURATION_RANGE))
def test_fio_argv_holds_only_allow_listed_words(p: FioParams, duration: int) -> None:
    argv = fio_argv(p, duration, SCRATCH, REPORT)
    allowed_values = {
        "rw": set(ps.FIO_RW),
        "ioengine": set(ps.FIO_ENGINES),
        "bs": {f"{b}k" for b in ps.FIO_BS_KIB},
        "filename": {SCRATCH},
        "output": {REPORT},
        "name": {"vmshadow"},
        "output-format": {"json"},
        "rate_process": {"poisson"},
        "percentile_list": {"50:95:99"},
        "eta": {"never"},
        "size": {f"{n}M" for n in range(1, 4097)},
    }
    numeric = {"iodepth", "runtime", "direct", "fsync", "rate_iops", "numjobs", "rwmixread"}
    assert argv[0] == "fio"
    for token in argv[1:]:
        key, _, value = token.removeprefix("--").partition("=")
        if token in ("--time_based", "--group_reporting"):
            continue
        assert token.startswith("--") and "=" in token, token
        assert (key in numeric and _NUMBER.fullmatch(value)) or value in allowed_values[key], token
    assert f"--filename={SCRATCH}" in argv
    assert sum(t.startswith("--filename") for t in argv) == 1
    # Paced, with Poisson arrivals unless fsync is on (fio 3.33 crashed on that mix).
    assert ("--rate_process=poisson" in argv) == (p.rate_iops is not None and not p.fsync)


def test_argv_examples() -> None:
    cpu = StressNgParams("cpu", 2, cpu_load=60)
    assert stress_ng_argv(cpu, 5, "/t/m.yaml") == [
        "stress-ng", "--cpu", "2", "--cpu-method", "int64", "--cpu-load", "60",
        "--cpu-load-slice", "50", "--timeout", "5s", "--metrics-brief", "--yaml", "/t/m.yaml",
    ]  # fmt: skip
    vm = StressNgParams("vm", 1, vm_bytes_mib=256, vm_keep=True)
    assert stress_ng_argv(vm, 8, "/t/m.yaml", exe="/usr/bin/stress-ng")[:7] == [
        "/usr/bin/stress-ng", "--vm", "1", "--vm-bytes", "256M", "--vm-keep", "--timeout",
    ]  # fmt: skip
    fio = FioParams("randread", 4, 8, 64, rate_iops=100, direct=True, ioengine="libaio", fsync=2)
    argv = fio_argv(fio, 3, "/dev/vdb", "/t/fio.json")
    for token in ("--rw=randread", "--bs=4k", "--iodepth=8", "--size=64M", "--direct=1",
                  "--runtime=3", "--time_based", "--rate_iops=100", "--fsync=2",
                  "--ioengine=libaio", "--output-format=json", "--output=/t/fio.json"):  # fmt: skip
        assert token in argv


def test_fio_numjobs_and_mix_are_checked_and_reach_argv() -> None:
    fio = FioParams("randrw", 8, 4, 64, ioengine="libaio", numjobs=3, rwmixread=70)
    assert FioParams.from_dict(fio.to_dict()) == fio
    argv = fio_argv(fio, 3, "/dev/vdb", "/t/fio.json")
    assert {"--numjobs=3", "--group_reporting", "--rwmixread=70"} <= set(argv)
    # Defaults stay off the wire and off the command line.
    plain = FioParams("read", 4, 1, 64)
    assert "numjobs" not in plain.to_dict() and "rwmixread" not in plain.to_dict()
    assert not any(t.startswith(("--numjobs", "--rwmix")) for t in fio_argv(plain, 3, "/x", "/y"))
    for bad_args, field in (
        ({"numjobs": 17}, "params.numjobs"),
        ({"rwmixread": 101}, "params.rwmixread"),
        ({"ioengine": "sync", "iodepth": 2}, "params.iodepth"),
    ):
        kw: dict[str, object] = {"rw": "randrw", "bs_kib": 4, "iodepth": 1, "size_mib": 8}
        kw.update(bad_args)
        with pytest.raises(ProtocolError) as info:
            FioParams.from_dict(kw)
        assert info.value.field == field
    with pytest.raises(ProtocolError, match="only valid with rw"):
        FioParams("read", 4, 1, 8, rwmixread=50)
