"""Profiles: built-ins valid, user YAML errors name the line and the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmshadow.domain.errors import ConfigError
from vmshadow.workloads.catalog import check_profile, ramp_plan
from vmshadow.workloads.profiles import (
    builtin_profiles,
    load_profile,
    parse_profile,
    profile_schema,
)

GOOD = """\
name: mine
unit: jobs/s
per_unit:
  cpu_percent: 2
  memory_mib: 1
  iops: 0.5
ramp: [5, 10]
"""


def test_builtins_are_the_five_and_make_valid_phases() -> None:
    ps = builtin_profiles()
    assert set(ps) == {"web", "oltp", "analytics", "cache", "build"}
    for p in ps.values():
        assert p.unit
        steps = ramp_plan(p, duration_s=5, shadow_memory_mib=512).phases
        assert steps, p.name
        for n, phases in enumerate(steps):
            assert [s.phase_id for s in phases] == [f"s{n}-cpu", f"s{n}-memory", f"s{n}-io"]


def test_phases_follow_the_load() -> None:
    web = builtin_profiles()["web"]
    cpu, mem, io = web.phases(100, duration_s=5)
    assert cpu.params.cpu_load == 40  # type: ignore[union-attr]
    assert mem.params.vm_bytes_mib == 146  # type: ignore[union-attr]
    assert io.params.rate_iops == 5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD.replace("cpu_percent: 2", "cpu_percent: -2"), "x.yaml:4: per_unit.cpu_percent"),
        (
            GOOD.replace("unit: jobs/s", "unit: jobs/s\nexec_prerun: rm -rf /"),
            "x.yaml:3: exec_prerun",
        ),
        (GOOD.replace("ramp: [5, 10]", "ramp: [5]"), "x.yaml:7: ramp"),
        (GOOD.replace("name: mine", "name: Mine!"), "x.yaml:1: name"),
        ("name: [unclosed\n", "x.yaml:2"),
    ],
)
def test_errors_name_line_and_option(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_profile(text, "x.yaml")
    assert str(caught.value).startswith(where), str(caught.value)


def test_user_profile_from_file_and_schema(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    assert load_profile(str(f)).name == "mine"
    schema = profile_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"name", "unit", "ramp"}
    # per_unit may be left out only by a profile that runs its application.
    assert schema["anyOf"] == [{"required": ["per_unit"]}, {"required": ["app"]}]


def test_ramp_profiles_need_a_load() -> None:
    with pytest.raises(ConfigError) as caught:
        check_profile("web", None)
    assert caught.value.field == "load"
    assert check_profile("smoke", None) is None


def test_a_profile_too_big_for_the_shadow_is_refused() -> None:
    big = parse_profile(GOOD.replace("memory_mib: 1", "memory_mib: 100"), "big.yaml")
    with pytest.raises(ConfigError, match="more memory"):
        ramp_plan(big, duration_s=5, shadow_memory_mib=512)


def test_an_io_rate_past_what_fio_is_asked_names_per_unit_iops() -> None:
    # Found by the fuzz test: 100,001 IOPS per unit at a load of 10 reached the
    # agent's bound on fio's rate as a protocol error, not as the profile's.
    text = GOOD.replace("iops: 0.5", "iops: 100001").replace("memory_mib: 1", "memory_mib: 0")
    p = parse_profile(text, "fast.yaml")
    with pytest.raises(ConfigError, match=r"per_unit.iops: this load asks 1,000,010 IOPS"):
        ramp_plan(p, duration_s=5, shadow_memory_mib=512)
    assert p.phases(9, duration_s=5)[2].params.rate_iops == 900_009  # within: asked as is


def test_full_load_phases_spread_the_cpu_over_the_vcpus() -> None:
    web = load_profile("web")  # 0.4 % of a vCPU per request/s
    one = web.phases(400, duration_s=5, vcpus=1)[0].params
    assert (one.workers, one.cpu_load) == (1, 100)  # 160 % does not fit one vCPU
    two = web.phases(400, duration_s=5, vcpus=2)[0].params
    assert (two.workers, two.cpu_load) == (2, 80)
    four = web.phases(400, duration_s=5, vcpus=4)[0].params
    assert (four.workers, four.cpu_load) == (2, 80)  # as few workers as carry it
    assert web.phases(50, duration_s=5, vcpus=4)[0].params.workers == 1
