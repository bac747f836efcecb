"""Hostile profile YAML (issue 14, item 16): alias bombs, self-reference, deep
nesting, huge integers and non-finite numbers end as a ``ConfigError`` naming
the file and line, quickly and without a traceback of another kind."""

from __future__ import annotations

import contextlib
import os
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from vmshadow.domain.errors import ConfigError
from vmshadow.workloads import yamlsafe
from vmshadow.workloads.profiles import load_profile, parse_profile

pytestmark = pytest.mark.security

GOOD = """\
name: mine
unit: req/s
per_unit: {cpu_percent: 1, memory_mib: 1, iops: 1}
ramp: [1, 2]
"""


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_profile(text, "p.yaml")
    return info.value


def test_an_alias_bomb_is_refused_at_its_first_anchor_without_expanding() -> None:
    tracemalloc.start()
    try:
        err = _refused(_alias_bomb())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.field == "p.yaml:1"
    assert "alias" in err.reason
    assert peak < 50 * 2**20  # the bomb expanded took 2.6 GB


def test_a_self_referencing_alias_is_a_config_error() -> None:
    err = _refused(GOOD + "x: &r [*r]\n")
    assert err.field == "p.yaml:5" and "alias" in err.reason


def test_a_5000_deep_list_is_a_config_error_naming_the_line() -> None:
    err = _refused(GOOD + "x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert err.field == "p.yaml:5"
    assert "deeper than" in err.reason


def test_a_5000_digit_integer_is_a_config_error_naming_the_line() -> None:
    err = _refused(GOOD.replace("iops: 1", "iops: " + "9" * 5000))
    assert err.field == "p.yaml:3"


@pytest.mark.parametrize(
    ("ramp", "line"),
    [("[.inf, 1e308]", "p.yaml:4"), ("[1, .nan]", "p.yaml:4"), ("[1, 1e400]", "p.yaml:4")],
)
def test_non_finite_loads_are_refused(ramp: str, line: str) -> None:
    err = _refused(GOOD.replace("[1, 2]", ramp))
    assert err.field.startswith(line)


def test_an_absurd_but_finite_load_is_refused_by_the_field_bound() -> None:
    err = _refused(GOOD.replace("[1, 2]", "[1, 1e308]"))
    assert err.field == "p.yaml:4: ramp.1"
    assert "less than or equal" in err.reason


def test_an_impossible_timestamp_is_a_config_error() -> None:
    err = _refused(GOOD + "description: 2001-02-30\n")
    assert err.field == "p.yaml:5"


def test_a_file_over_the_size_bound_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "description: |\n" + ("  " + "x" * 78 + "\n") * 5000)
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert info.value.field == str(path) and "at most" in info.value.reason


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(GOOD.encode() + b"description: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert info.value.field == f"{path}:5"


def test_a_flat_list_of_many_values_is_bounded() -> None:
    err = _refused(GOOD + "x: [" + "0," * 60_000 + "0]\n")
    assert "more than" in err.reason


def test_the_loader_still_reads_ordinary_profiles() -> None:
    assert parse_profile(GOOD, "p.yaml").ramp == [1.0, 2.0]


# -- fuzzing the same shapes ------------------------------------------------------------------
scalars = st.sampled_from(
    [".inf", "-.inf", ".nan", "1e308", "1e400", "-1", "0", "9" * 5000, "0x" + "f" * 200,
     "2001-02-30", "!!binary AAA", "!!set {a}", "*r", "&r x", "? [a]", "<<: *r", "null", "~"]
) | st.integers(-(10**40), 10**40).map(str) | st.floats().map(repr)  # fmt: skip


@st.composite
def hostile_yaml(draw: st.DrawFn) -> str:
    depth = draw(st.integers(0, 200))
    value = draw(scalars)
    if draw(st.booleans()):
        value = "[" * depth + value + "]" * depth
    else:
        value = "{a: " * depth + value + "}" * depth
    anchor = draw(st.sampled_from(["", "&r ", "&r [*r] #"]))
    field = draw(st.sampled_from(["ramp", "per_unit", "x", "name", "base_memory_mib"]))
    lines = GOOD.splitlines()
    lines = [ln for ln in lines if not ln.startswith(field + ":")]
    lines.insert(draw(st.integers(0, len(lines))), f"{field}: {anchor}{value}")
    return "\n".join(lines) + "\n"


@given(hostile_yaml())
def test_hostile_shapes_are_accepted_finite_or_refused_with_a_line(text: str) -> None:
    try:
        p = parse_profile(text, "p.yaml")
    except ConfigError as exc:
        assert exc.field.startswith("p.yaml:")  # every refusal names a line
        return
    for load in p.ramp:
        assert 0 < load <= 1e6
    for value in p.per_unit.model_dump().values():
        assert 0 <= value < 1e7


@given(st.binary(max_size=300))
def test_any_bytes_as_a_profile_file_are_accepted_or_a_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        yamlsafe.load(data.decode("utf-8", "replace"), "p.yaml")


def test_yaml_errors_do_not_escape_as_yaml_errors() -> None:
    with pytest.raises(ConfigError):
        yamlsafe.load("a: [1, 2\n", "p.yaml")
    assert issubclass(ConfigError, Exception) and not issubclass(ConfigError, yaml.YAMLError)


def test_a_job_file_that_is_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "db.fio")  # opening it to read would wait for a writer forever
    (tmp_path / "p.yaml").write_text(GOOD + "fio_job_file: db.fio\n")
    with pytest.raises(ConfigError) as info:
        load_profile(str(tmp_path / "p.yaml"))
    assert "regular file" in info.value.reason
