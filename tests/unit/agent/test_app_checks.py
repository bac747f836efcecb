"""App phases: the checks both sides run on the user's command, before anything runs.

Each refusal here is one a naive implementation (``str.format`` for the
placeholders, ``Popen`` as it comes, a character count for the size) would
let through or crash on in the middle of a ramp.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agenttest_helpers import app_params
from hypothesis import given, settings

from vmshadow.agent import appspec
from vmshadow.agent.appproc import short_argv
from vmshadow.agent.appspec import AppParams, check_argv, format_rate, render
from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phaserun import os_name
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import LineDecoder, encode_message, message


def app(command: list[str], achieved: str = r"tps = ([0-9.]+)", **kw: Any) -> AppParams:
    return AppParams(command=tuple(command), achieved=achieved, rate=kw.pop("rate", 100.0), **kw)


def spec(params: AppParams) -> PhaseSpec:
    return PhaseSpec("s0-app", "app", 2, params)


def refused(build: Callable[[], object], *words: str) -> str:
    with pytest.raises(ProtocolError) as caught:
        build()
    assert caught.value.code == "bad_field"
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value.message


# -- the checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg",
    ["--rate={rate.real}", "{0}", "{}", "{ rate }", "{RATE}", "x{", "}x", "{rate", "{duration!r}"],
)
def test_only_rate_and_duration_are_placeholders(arg: str) -> None:
    # str.format would evaluate {rate.real} and {0}, and choke on a lone brace.
    refused(lambda: app(["bench", arg]), "{rate} and {duration}")


def test_doubled_braces_are_literal_and_placeholders_are_filled() -> None:
    params = app(["bench", "--rate={rate}", "-T", "{duration}", "{{x}}", "{{rate}}"], rate=12.5)
    assert params.argv(7) == ["bench", "--rate=12.5", "-T", "7", "{x}", "{rate}"]
    assert render(["{rate}{rate}"], 3.0, 1) == ["33"]


@pytest.mark.parametrize(
    ("rate", "text"), [(100.0, "100"), (12.5, "12.5"), (1e6, "1000000"), (0.001, "0.001")]
)
def test_the_rate_is_written_without_exponent(rate: float, text: str) -> None:
    assert format_rate(rate) == text


def test_nul_and_lone_surrogates_are_refused() -> None:
    # Popen raises ValueError on NUL; a surrogate cannot be encoded for execve.
    refused(lambda: app(["bench", "a\x00b"]), "params.command[1]", "NUL")
    refused(lambda: app(["bench", "\udcff"]), "params.command[1]", "Unicode")


def test_argv_size_is_bounded_in_bytes_not_characters() -> None:
    ok = "é" * (appspec.MAX_ARG_BYTES // 2)  # 4096 bytes in 2048 characters
    app(["bench", ok])
    refused(lambda: app(["bench", ok + "é"]), "at most 4096 bytes")
    refused(lambda: app(["bench", *["x"] * appspec.MAX_ARGS]), "1..64 arguments")
    big = "y" * appspec.MAX_ARG_BYTES
    refused(lambda: app(["bench", big, big, "z"]), "8192 bytes in all")


@pytest.mark.parametrize("value", [[], "pgbench -c 1", ("pgbench", 3), None, {"argv": ["pgbench"]}])
def test_argv_is_a_non_empty_list_of_strings(value: object) -> None:
    refused(lambda: check_argv(value, "params.command"), "params.command")


@pytest.mark.parametrize(
    "program",
    [
        "../bin/bench",
        "bin/bench",
        "/usr/../bin/sh",
        "/usr/./bin/sh",
        "//bin/sh",
        "/bin/",
        "/",
        "-rf",
        ".hidden",
        "..",
        "{rate}",
        "bench{{",
        "a b",
        "/usr/bin/a b",
        "/" + "a" * 300,
    ],
)
def test_the_program_is_a_plain_name_or_a_clean_absolute_path(program: str) -> None:
    refused(lambda: app([program]), "params.command[0]")


@pytest.mark.parametrize("program", ["pgbench", "redis-server", "python3.11", "/usr/bin/ab"])
def test_plain_programs_are_accepted(program: str) -> None:
    assert app([program]).command == (program,)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("tps = [0-9.]+", "exactly one group"),
        ("(a)(b)", "exactly one group"),
        ("tps = ([0-9.]+", "not a regular expression"),
        ("", "non-empty"),
        ("x" * 257, "at most 256"),
        ("(a\x00)", "without NUL"),
    ],
)
def test_achieved_compiles_with_exactly_one_group(pattern: str, why: str) -> None:
    refused(lambda: app(["bench"], achieved=pattern), "params.achieved", why)


def test_a_non_capturing_group_does_not_count() -> None:
    assert app(["bench"], achieved=r"(?:tps|qps) = ([0-9.]+)").pattern.groups == 1


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("rate", 0.0, "above 0"),
        ("rate", float("nan"), "finite"),
        ("rate", float("inf"), "finite"),
        ("rate", True, "number"),
        ("rate", 2e6, "finite number in"),
        ("unit_scale", 0.0, "above 0"),
        ("ready_port", 0, "1..65535"),
        ("ready_port", 65536, "1..65535"),
        ("ready_timeout_s", 0, "1..300"),
        ("user", "root", "may not run as root"),
        ("user", "Bad User", "must match"),
        ("user", "../etc", "must match"),
    ],
)
def test_numbers_ports_and_users_are_bounded(field: str, value: object, why: str) -> None:
    d = app(["bench"]).to_dict()
    d[field] = value
    refused(lambda: AppParams.from_dict(d), f"params.{field}", why)


def test_unknown_and_missing_params_are_refused() -> None:
    d = app(["bench"]).to_dict()
    refused(lambda: AppParams.from_dict({**d, "shell": True}), "unknown field")
    refused(lambda: AppParams.from_dict({k: v for k, v in d.items() if k != "achieved"}))


@settings(max_examples=60, deadline=None)
@given(app_params())
def test_app_specs_survive_the_wire(params: AppParams) -> None:
    s = spec(params)
    line = encode_message(message("run", phase=s.to_dict()))
    decoded = LineDecoder().feed(line)[0]
    assert PhaseSpec.from_dict(decoded["phase"]) == s


def test_the_largest_spec_fits_one_protocol_line() -> None:
    # Four-byte characters escape to 12 JSON bytes each: both argvs at their limit.
    arg = "\U0001f600" * (appspec.MAX_ARG_BYTES // 4 - 1)
    params = app(["bench", arg, arg], server=("srv", arg, arg), achieved="(" + "x" * 254 + ")")
    encode_message(message("run", phase=spec(params).to_dict()))


def test_os_name_reads_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert os_name((str(tmp_path / "absent"), str(release))) == "Debian GNU/Linux 12 (bookworm)"
    assert os_name((str(tmp_path / "absent"),)) is None


def test_short_argv_keeps_results_small() -> None:
    text = short_argv(("python3", "-c", "import sys\n" + "x = 1\n" * 50, "{rate}"))
    assert "\n" not in text and text.endswith("... {rate}") and len(text) < 80
