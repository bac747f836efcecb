"""The CLI client's pure parts: where it looks for the service and its token,
how it reads sizes and answers, and how an API error becomes one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from vmshadow.cli import checks
from vmshadow.cli.apiclient import ApiError, ClientConfig, client_config
from vmshadow.cli.checks import parse_memory_mib
from vmshadow.cli.launch import _answer
from vmshadow.cli.views import findings
from vmshadow.config import load_settings
from vmshadow.domain.errors import ConfigError


def config(tmp_path: Path, text: str = "", **env: str) -> ClientConfig:
    path = tmp_path / "config.toml"
    path.write_text(text)
    settings = load_settings(config_path=path, environ={"VMSHADOW_DATA_DIR": str(tmp_path), **env})
    return client_config(settings)


def test_defaults_follow_where_serve_listens_and_its_token_file(tmp_path: Path) -> None:
    c = config(tmp_path, "[api]\nport = 9001\n")
    assert c.url == "http://127.0.0.1:9001"
    assert c.token is None and c.token_file == tmp_path / "api-token"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8600"),
        ("::", "http://[::1]:8600"),
        ("fd00::5", "http://[fd00::5]:8600"),
    ],
)
def test_a_service_bound_everywhere_is_reached_on_loopback(
    tmp_path: Path, host: str, url: str
) -> None:
    assert config(tmp_path, f'[api]\nhost = "{host}"\n').url == url


def test_environment_beats_the_file_and_the_api_suffix_is_optional(tmp_path: Path) -> None:
    c = config(
        tmp_path,
        '[client]\nurl = "http://file:1"\ntoken = "from-file"\n',
        VMSHADOW_URL="http://env:2/api/v1/",
        VMSHADOW_TOKEN="from-env",
    )
    assert c.url == "http://env:2" and c.token == "from-env"


def test_the_token_never_shows_in_a_repr(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[client]\ntoken = "s3cret"\n')
    assert "s3cret" not in repr(load_settings(config_path=path, environ={}))


def test_a_url_without_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"client.url: '127.0.0.1:8600' is not an http"):
        config(tmp_path, '[client]\nurl = "127.0.0.1:8600"\n')


@pytest.mark.parametrize(
    ("text", "mib"),
    [("4G", 4096), ("512M", 512), ("1.5GiB", 1536), ("2048", 2048), ("1t", 1048576)],
)
def test_memory_sizes(text: str, mib: int) -> None:
    assert parse_memory_mib(text) == mib


@pytest.mark.parametrize("text", ["lots", "", "-1G", "nan"])
def test_bad_memory_names_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="^--memory: "):
        parse_memory_mib(text)


def test_answers() -> None:
    assert [_answer(a) for a in ("y", "YES", "n", "No", "o", "over")] == list("yynnoo")
    with pytest.raises(click.UsageError):
        _answer("maybe")


def test_api_error_says_the_field_once() -> None:
    e = ApiError(409, {"error": "x", "field": "vm_name", "reason": "vm_name: taken"})
    assert str(e) == "vm_name: taken" and e.reason == "taken"
    assert str(ApiError(404, {"error": "no transition 'x'", "field": None})) == "no transition 'x'"


def test_findings_take_risk_from_the_review_and_compare_the_rest() -> None:
    doc = {
        "requested": {"vcpus": 2, "memory_mib": 4096, "iops": None},
        "recommended": {"vcpus": 4, "memory_mib": 1024, "iops": 120},
    }
    review = {"warnings": [{"resource": "vcpus", "severity": "under-provisioned", "message": "m"}]}
    assert findings(doc, review) == {
        "vcpus": "under-provisioned",
        "memory_mib": "over-provisioned",
        "iops": "no cap",
    }


@pytest.mark.parametrize(
    ("check", "value", "flag"),
    [
        (checks.vcpus, 0, "--cpus"),
        (checks.vcpus, 257, "--cpus"),
        (checks.iops, 0, "--iops"),
        (checks.load, -5.0, "--load"),
        (checks.load, float("nan"), "--load"),
        (checks.load, float("inf"), "--load"),
        (checks.when, "tomorrow", "--at"),
        (checks.vm_name, "Bad Name", "NAME"),
        (checks.image_name, "../x", "--image"),
        (checks.state, "sleeping", "--state"),
        (checks.limit, 0, "--limit"),
        (checks.vm_memory, "64M", "--memory"),
    ],
)
def test_each_local_check_refuses_as_bad_usage_naming_its_flag(
    check: Callable[[Any], Any], value: Any, flag: str
) -> None:
    with pytest.raises(checks.BadUsage, match=f"^{flag}: "):
        check(value)


def test_local_checks_pass_what_the_service_should_judge() -> None:
    # 9 vCPUs may be over this host's quota, but only the service knows: not bad usage.
    assert checks.vcpus(9) == 9 and checks.load(0.5) == 0.5 and checks.iops(None) is None
    assert checks.when("2026-12-01T18:00:00Z") == "2026-12-01T18:00:00Z"
    assert checks.vm_memory("4G") == 4096 and checks.image_name("builtin") == "builtin"
