"""What the whole ``vmshadow`` command line does the same way (issue 15, "The
CLI"): ``--version``, ``-h`` on every command, help for users without
``[default: None]``, one-line usage errors with exit code 2 found before any
work, ``-c/--connect`` for the libvirt URI, shell completion, and the
progress line's step k of n with the time left."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner, Result

import vmshadow.cli.main as cli_main
import vmshadow.usecases.plan
import vmshadow.usecases.shadowrun
from vmshadow.cli.main import app
from vmshadow.cli.progress import PhaseClock, _Live


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("VMSHADOW_LIBVIRT_URI", raising=False)
    monkeypatch.setenv("COLUMNS", "120")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(app, list(args), prog_name="vmshadow", env=env)


def command_paths(cmd: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in getattr(cmd, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


ALL = command_paths(typer.main.get_command(app))


def test_version() -> None:
    r = run("--version")
    assert r.exit_code == 0 and r.stdout == f"vmshadow {version('vmshadow')}\n"


def test_the_top_level_help_speaks_to_users() -> None:
    r = run()
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "Right-size libvirt VMs before they launch" in text
    assert "vmshadow doctor" in text and "vmshadow launch NAME --profile web" in text
    assert "Typer" not in text and "Thin on purpose" not in text  # no developer docstring


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "vmshadow")
def test_every_command_takes_h_and_shows_no_none_default(path: tuple[str, ...]) -> None:
    assert len(ALL) > 20  # every group and command, not only the top
    short, long = run(*path, "-h"), run(*path, "--help")
    assert short.exit_code == 0 and short.stdout == long.stdout
    assert "Usage: vmshadow" in short.stdout
    assert "[default: None]" not in short.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("launch", "web1", "--profile", "smoke", "--cpus", "two"), "error: --cpus: 'two' is not"),
        (("launch", "web1"), "error: --profile: required"),
        (("launch", "web1", "--prof", "web"), "error: --prof: no such option (did you mean"),
        (("lunch",), "error: no such command 'lunch'"),
        (("ls", "--limit", "x"), "error: --limit: 'x' is not a valid integer"),
        (("plan", "--profile", "web", "--load", "-5"), "error: --load: -5 is not a load"),
        (("plan", "--profile", "web", "--cpus", "0"), "error: --cpus: 0 is not a number of"),
        (("plan", "--profile", "web", "--memory", "lots"), "error: --memory: 'lots' is not"),
        (("plan", "--profile", "web", "--emit", "ansible"), "error: --emit: no format 'ansible'"),
        (("shadow", "run", "--timeout", "0"), "error: --timeout: 0 is not a positive number"),
        (("serve", "--port", "0"), "error: --port: 0 is not in the range 1<=x<=65535"),
        (("model", "train", "--history", "store", "--margin", "9"), "error: --margin: 9.0 is"),
    ],
)
def test_bad_usage_is_one_line_exit_2_before_any_work(
    args: tuple[str, ...], line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boot(*_a: object, **_k: object) -> None:
        raise AssertionError("a shadow was booted for bad input")

    # `plan --load -5` once booted a shadow; now nothing may start.
    monkeypatch.setattr(vmshadow.usecases.plan, "plan", boot)
    monkeypatch.setattr(vmshadow.usecases.shadowrun, "shadow_run", boot)
    r = run(*args)
    assert r.exit_code == 2, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith(line), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_connect_beats_the_config_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def doctor(settings: Any) -> dict[str, Any]:
        seen.append(settings.libvirt_uri)
        return {"ok": True, "checks": []}

    def plan(settings: Any, *_a: object, **_k: object) -> dict[str, Any]:
        seen.append(settings.libvirt_uri)
        return {"plan": "stand-in"}

    monkeypatch.setattr(cli_main, "run_doctor", doctor)
    monkeypatch.setattr(vmshadow.usecases.plan, "plan", plan)
    env = {"VMSHADOW_LIBVIRT_URI": "qemu:///session"}
    assert run("doctor", "--json", env=env).exit_code == 0
    assert run("doctor", "--json", "-c", "test:///default", env=env).exit_code == 0
    assert run("doctor", "--json", "--connect", "qemu+ssh://h/system", env=env).exit_code == 0
    r = run("plan", "--profile", "web", "--json", "-c", "test:///default", env=env)
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert seen == ["qemu:///session", "test:///default", "qemu+ssh://h/system", "test:///default"]


def test_shell_completion_installs_and_completes() -> None:
    r = run("--show-completion", "bash")
    assert r.exit_code == 0 and "complete -o default -F _vmshadow_completion vmshadow" in r.stdout
    assert "--install-completion" in run("-h").stdout
    words = {"_VMSHADOW_COMPLETE": "complete_bash", "COMP_WORDS": "vmshadow la", "COMP_CWORD": "1"}
    assert run(env=words).stdout.split() == ["launch"]


def test_a_ramp_shows_step_k_of_n_and_the_time_left() -> None:
    clock = PhaseClock(steps=4)
    for t, phase in ((0, "s0-cpu"), (4, "s0-cpu"), (5, "s0-memory"), (10, "s0-io")):
        clock.take(phase, t)
    # How many phases a step has is not known until the second step starts.
    assert clock.text() == "step 1/4 (s0-io)" and clock.left_s() is None
    clock.take("s1-cpu", 15)
    assert clock.per_step == 3
    assert clock.text() == "step 2/4 (s1-cpu), about 45 s left"  # 9 phases of 5 s
    clock.take("s1-cpu", 18)
    assert clock.left_s() == 42
    for t, phase in ((20, "s1-memory"), (25, "s1-io"), (30, "s2-cpu"), (35, "s2-memory")):
        clock.take(phase, t)
    assert clock.text() == "step 3/4 (s2-memory), about 25 s left"


def test_smoke_knows_its_phases_from_the_start_and_unknown_profiles_show_the_phase() -> None:
    smoke = PhaseClock(steps=1, per_step=3, phase_s=8.0)
    smoke.take("cpu", 0.0)
    assert smoke.text() == "phase 1/3 (cpu), about 24 s left"
    smoke.take("memory", 8.0)
    smoke.take("memory", 12.0)
    assert smoke.text() == "phase 2/3 (memory), about 12 s left"  # 8 + 8 - 4
    unknown = PhaseClock()
    unknown.take("s2-cpu", 3.0)
    assert unknown.text() == "phase s2-cpu" and unknown.left_s() is None


def test_the_progress_line_shows_the_step_while_profiling_only() -> None:
    live = _Live("profiling", PhaseClock(steps=1, per_step=3, phase_s=10.0))
    live.take({"phase_id": "cpu", "t": 0.0, "source": "host", "busy_vcpus": 0.9})
    assert live.text() == "[bold]profiling[/]  phase 1/3 (cpu), about 30 s left  0.90 vCPU"
    live.state = "predicted"
    assert "phase" not in live.text()
