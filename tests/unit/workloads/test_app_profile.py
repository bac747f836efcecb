"""Profiles that run the application itself (``app:``): reading, checking, the
phases they become, where they may run, and the ramp fitted on achieved load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmshadow.agent.appspec import AppParams
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.cli.main import app as cli
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.ramp import (
    app_run,
    ramp_saturated,
    ramp_steps,
    step_requirement,
)
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.ramp import RampPredictor
from vmshadow.workloads.catalog import ramp_plan
from vmshadow.workloads.profiles import load_profile, parse_profile, profile_schema

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples"

APP = """\
name: kv
unit: thousand ops/s
app:
  server: [redis-server, --port, "6399", --save, ""]
  ready_port: 6399
  command: [memtier_benchmark, -p, "6399", "--rate-limiting={rate}", "--test-time={duration}"]
  achieved: 'Totals\\s+([0-9.]+)'
  unit_scale: 0.001
  user: redis
ramp: [2, 4, 8]
"""


def check(text: str) -> None:
    parse_profile(text, "p.yaml")


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        check(text)
    return str(caught.value)


# -- reading and checking ----------------------------------------------------------------


def test_an_app_profile_becomes_one_app_phase_per_step() -> None:
    p = parse_profile(APP, "p.yaml")
    assert p.app is not None and p.per_unit.cpu_percent == 0
    (phase,) = p.phases(4, duration_s=8, step=1)
    assert phase.phase_id == "s1-app" and phase.kind == "app" and phase.duration_s == 8
    params = phase.params
    assert isinstance(params, AppParams) and params.rate == 4 and params.user == "redis"
    assert params.argv(8)[-2:] == ["--rate-limiting=4", "--test-time=8"]
    assert params.server_argv(8) == ["redis-server", "--port", "6399", "--save", ""]
    # What the guest checks again, after the wire.
    assert PhaseSpec.from_dict(json.loads(json.dumps(phase.to_dict()))) == phase


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (('"--rate-limiting={rate}"', '"--rate-limiting={rate.real}"'), "p.yaml:6: app.command.3"),
        (("memtier_benchmark,", "../memtier,"), "p.yaml:6: app.command.0"),
        ((r"'Totals\s+([0-9.]+)'", r"'Totals\s+[0-9.]+'"), "p.yaml:7: app.achieved"),
        ((r"'Totals\s+([0-9.]+)'", r"'Totals (\d+'"), "p.yaml:7: app.achieved"),
        (("user: redis", "user: root"), "p.yaml:9: app.user"),
        (("ready_port: 6399", "ready_port: 70000"), "p.yaml:5: app.ready_port"),
        (("unit_scale: 0.001", "unit_scale: 0"), "p.yaml:8: app.unit_scale"),
        (('"6399", --save', "6399, --save"), "p.yaml:4: app.server.2"),
        (("  user: redis", "  user: redis\n  shell: true"), "p.yaml:10: app.shell"),
        (("[redis-server,", '["redis-server\\0",'), "p.yaml:4: app.server.0"),
    ],
)
def test_bad_app_fields_name_their_line_and_option(change: tuple[str, str], where: str) -> None:
    old, new = change
    assert old in APP
    message = refused(APP.replace(old, new))
    assert message.startswith(where), message


def test_a_shell_string_is_not_an_argv() -> None:
    line = next(ln for ln in APP.splitlines() if ln.startswith("  command:"))
    text = APP.replace(line, '  command: "memtier_benchmark -p 6399"')
    assert refused(text).startswith("p.yaml:6: app.command")


def test_per_unit_is_required_only_without_app() -> None:
    no_cost = "name: x\nunit: u/s\nramp: [1, 2]\n"
    assert refused(no_cost).startswith("p.yaml: per_unit: required, unless")
    with_cost = APP.replace("ramp:", "per_unit: {cpu_percent: 1, memory_mib: 2, iops: 0}\nramp:")
    assert parse_profile(with_cost, "p.yaml").per_unit.memory_mib == 2


@pytest.mark.parametrize(
    "extra", ["io: {rw: read}", "fio_job: |\n  [j]\n  rw=read", "fio_job_file: j.fio"]
)
def test_fio_shapes_are_refused_beside_an_app(extra: str) -> None:
    key = extra.split(":")[0]
    assert refused(APP + extra + "\n").startswith(f"p.yaml:11: {key}")


def test_the_schema_covers_app() -> None:
    schema = profile_schema()
    assert "app" in schema["properties"]
    app_def = schema["$defs"]["AppCommand"]
    assert set(app_def["required"]) == {"command", "achieved"}
    assert app_def["additionalProperties"] is False
    assert app_def["properties"]["command"]["maxItems"] == 64
    assert {"required": ["app"]} in schema["anyOf"]


# -- where it may run --------------------------------------------------------------------


def test_the_built_in_image_refuses_an_app_profile_before_anything_boots() -> None:
    p = parse_profile(APP, "p.yaml")
    with pytest.raises(ConfigError) as caught:
        ramp_plan(p, duration_s=8, shadow_memory_mib=512)
    assert caught.value.field == "image"
    assert "memtier_benchmark" in str(caught.value) and "store image" in str(caught.value)
    steps = ramp_plan(p, duration_s=8, shadow_memory_mib=512, image="shop-os").phases
    assert [[s.phase_id for s in step] for step in steps] == [["s0-app"], ["s1-app"], ["s2-app"]]


def test_per_unit_beside_an_app_still_keeps_steps_inside_the_shadow() -> None:
    heavy = APP.replace("ramp:", "per_unit: {cpu_percent: 1, memory_mib: 50, iops: 0}\nramp:")
    steps = ramp_plan(parse_profile(heavy, "p.yaml"), duration_s=8, shadow_memory_mib=512,
                      image="shop-os").phases  # fmt: skip
    assert len(steps) == 2  # 64 + 8 x 50 MiB would not fit 70 % of 512 MiB


# -- the examples in the docs ------------------------------------------------------------


@pytest.mark.parametrize("name", ["profile-app-example.yaml", "profile-app-pyhttp.yaml"])
def test_the_documented_examples_check_and_are_shown_verbatim(name: str) -> None:
    path = EXAMPLES / name
    p = load_profile(str(path))
    assert p.app is not None
    assert path.read_text() in (ROOT / "docs" / "profiles.md").read_text()


def test_profile_check_shows_the_app_as_it_will_run() -> None:
    path = str(EXAMPLES / "profile-app-example.yaml")
    result = CliRunner().invoke(cli, ["profile", "check", path], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "profile pgshop (transactions/s), ramp 10, 20, 40, 80" in result.output
    assert "app: pgbench as user postgres" in result.output
    assert "ready: 127.0.0.1:5432 within 60 s" in result.output
    assert re.search(
        r"step 0 \(10 transactions/s, \d+ s\): pgbench -h /tmp --rate=10", result.output
    )


# -- the ramp on achieved load -----------------------------------------------------------


def app_points(step: int, cpu: float, mem: float, iops: float) -> list[UsagePoint]:
    return [
        UsagePoint(t, src, f"s{step}-app", cpu, mem, iops, 0, 0, 0)
        for t in range(6)
        for src in (Source.HOST, Source.GUEST)
    ]


def result(step: int, achieved: float, kind: str = "app") -> dict[str, object]:
    metrics = {"achieved_per_s": achieved, "command": "bench --rate={rate}"}
    return {"phase_id": f"s{step}-app", "kind": kind, "metrics": metrics}


LOADS = [10.0, 20.0, 40.0]
TRUE_CPU = 0.01  # vCPU per unit actually served


def test_app_run_reads_achieved_rates_and_averages_rounds() -> None:
    run = app_run(
        [result(0, 10), result(1, 19), result(1, 21), {"phase_id": "s0-cpu", "kind": "stress-ng"}]
    )
    assert run is not None and run.command == "bench --rate={rate}"
    assert run.achieved == {0: 10, 1: 20}
    assert app_run([{"phase_id": "s0-cpu", "kind": "stress-ng", "metrics": {}}]) is None


def test_the_app_phase_gives_every_resource() -> None:
    req = step_requirement(app_points(0, 0.4, 300, 12))
    assert (req.vcpus, req.memory_mib, req.iops) == (0.4, 300, 12)
    assert ramp_saturated(app_points(0, 0.95, 300, 0), ["s0-app"], vcpus=1)


def test_a_step_short_of_its_rate_is_fitted_at_the_load_it_reached() -> None:
    # The last step asked for 40 units/s and served 25: it used what 25 units cost.
    achieved = [10.0, 20.0, 25.0]
    points = [p for s, got in enumerate(achieved) for p in app_points(s, TRUE_CPU * got, 100, 0)]
    run = app_run([result(s, got) for s, got in enumerate(achieved)])
    predictor = RampPredictor(lambda _name: (LOADS, 0.0), shadow_vcpus=1, margin=1.0)
    honest = predictor.predict(points, profile="kv", load=100, app=run)
    naive = predictor.predict(points, profile="kv", load=100)
    assert honest.need.vcpus == pytest.approx(TRUE_CPU * 100, rel=1e-6)
    assert naive.need.vcpus < 0.8 * honest.need.vcpus  # the nominal loads under-state it
    detail = honest.detail
    assert detail["app"] == {"command": "bench --rate={rate}", "achieved": achieved}
    last = detail["ramp"][-1]
    assert last["load"] == 25 and last["asked_load"] == 40 and last["load_short"] is True
    assert detail["ramp"][0]["load_short"] is False
    assert "asked_load" not in naive.detail["ramp"][0]


def test_an_app_step_has_no_asked_iops_to_fall_short_of() -> None:
    points = [p for s in range(3) for p in app_points(s, 0.1, 100, 1)]
    steps = ramp_steps(points, LOADS, 5.0, 1, achieved={0: 10, 1: 20, 2: 40})
    assert not any(s.iops_short for s in steps)
