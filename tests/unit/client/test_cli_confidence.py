"""How sure a prediction is, as ``vmshadow show``/``launch`` (from the API's
document) and ``vmshadow plan`` (from its own) print it: an interval column,
the 0-4 risk with its drivers, the history count and the host contention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from rich.console import Console
from typer.testing import CliRunner

import vmshadow.usecases.plan
from vmshadow.cli.main import app
from vmshadow.cli.views import prediction_notes, prediction_table

SIZE = {"vcpus": 2, "memory_mib": 1024, "iops": None}
CONFIDENCE = {
    "risk": 3,
    "risk_level": "high",
    "drivers": [
        "no history behind the answer",
        "one ramp step: extrapolated x4.0 beyond it",
        "host contention 18 % during the shadow run",
    ],
    "intervals": {"vcpus": [2.8, 4.1], "memory_mib": [850.0, 980.0], "iops": None},
    "coverage": 0.9,
    "history_count": 0,
    "contention": {"limit": 0.1, "max_wait": 0.18, "contended_phases": ["s0-cpu"]},
}


def transition(**prediction: Any) -> dict[str, Any]:
    return {
        "kind": "launch",
        "vm_name": "web1",
        "profile": "web",
        "load": 200.0,
        "requested": SIZE,
        "recommended": {"vcpus": 5, "memory_mib": 1280, "iops": None},
        "prediction": {
            "label": "physical extrapolation from 1 ramp steps",
            "history_size": 0,
            "need": {"vcpus": 3.4, "memory_mib": 900.0, "iops": 0.0},
            "margin": 1.2,
            **prediction,
        },
    }


def printed(doc: dict[str, Any]) -> str:
    """What ``show`` and ``launch`` print of a prediction, as plain text."""
    console = Console(record=True, width=160, color_system=None)
    console.print(prediction_table(doc, None))
    for line in prediction_notes(doc):
        console.print(line)
    return console.export_text()


def test_show_prints_the_interval_the_risk_and_what_drives_it() -> None:
    text = printed(transition(confidence=CONFIDENCE))
    assert "interval (90 %)" in text
    cpu = next(line for line in text.splitlines() if "vCPU" in line and "3.40" in line)
    assert "2.8-4.1" in cpu
    iops = next(line for line in text.splitlines() if line.startswith("│ IOPS"))
    assert "—" in iops  # no interval for it: a dash, not a number
    assert (
        "risk 3 of 4 (high): no history behind the answer; one ramp step: extrapolated "
        "x4.0 beyond it; host contention 18 % during the shadow run"
    ) in text
    assert (
        "history records: 0; host contention during the shadow run: vCPU wait 18 % "
        "(limit 10 %), over it in s0-cpu"
    ) in text


def test_a_prediction_without_intervals_shows_dashes_never_numbers() -> None:
    old = {**CONFIDENCE, "intervals": None, "coverage": None, "risk": 2, "drivers": ["x"]}
    text = printed(transition(confidence=old))
    cpu = next(line for line in text.splitlines() if line.startswith("│ vCPU"))
    assert "—" in cpu and "interval (" not in text
    assert "risk 2 of 4 (medium): x" in text


def test_an_older_service_without_confidence_is_said_plainly() -> None:
    text = printed(transition())
    assert "history records: 0; confidence: not reported by the service" in text
    assert "risk" not in text


# -- vmshadow plan --------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("COLUMNS", "160")


def plan_doc(**detail: Any) -> dict[str, Any]:
    """``usecases.plan.plan``'s document for a ramp prediction."""
    need = {"vcpus": 1.7, "memory_mib": 600.0, "iops": 80.0}
    return {
        "profile": "web",
        "image": "builtin",
        "unit": "req/s",
        "load": 400.0,
        "target": None,
        "accelerator": "tcg",
        "prediction": {
            "method": "ramp-extrapolation",
            "label": "physical extrapolation from 1 ramp steps",
            "history_size": 0,
            "margin": 1.2,
            "median": need,
            "p90": None,
            "recommended": {"vcpus": 2, "memory_mib": 768, "iops": 100},
            "detail": {"ramp": [{"step": 0, "load": 100.0}], **detail},
        },
        "phases": [],
        "contention": {
            "limit": 0.1,
            "max_wait": 0.02,
            "max_steal": 0.15,
            "max_host_busy": 0.4,
            "contended_phases": ["s0-cpu"],
        },
        "timings": {"agent_ready_s": 3.0, "profile_s": 30.0, "total_s": 40.0},
    }


def run_plan(monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any], *flags: str) -> Result:
    monkeypatch.setattr(vmshadow.usecases.plan, "plan", lambda *_a, **_k: doc)
    args = ["plan", "--profile", "web", "--load", "400", "-c", "test:///default", *flags]
    r = CliRunner(mix_stderr=False).invoke(app, args, prog_name="vmshadow")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


INTERVAL = {"vcpus": [1.4, 2.1], "memory_mib": [560.0, 650.0], "iops": [70.0, 95.0]}


def test_plan_shows_the_interval_instead_of_an_empty_p90(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = plan_doc(interval=INTERVAL, interval_coverage=0.9, history_count=0)
    text = run_plan(monkeypatch, doc).stdout
    assert "P90" not in text and "interval (90 %)" in text
    assert "1.4-2.1" in text and "560-650" in text
    # vCPU 2 < 2.1; the steal the plan saw over every phase counts as contention.
    assert (
        "risk 4 of 4 (very high): recommendation below the interval's upper bound "
        "(vCPU 2 < 2.1); host contention 15 % during the shadow run; no history behind "
        "the answer; one ramp step: extrapolated x4.0 beyond it"
    ) in " ".join(text.split())


def test_plan_json_carries_the_confidence(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = plan_doc(interval=INTERVAL, interval_coverage=0.9, history_count=3)
    got = json.loads(run_plan(monkeypatch, doc, "--json").stdout)["prediction"]["confidence"]
    assert got["risk"] == 3 and got["risk_level"] == "high" and got["history_count"] == 3
    assert got["intervals"]["vcpus"] == [1.4, 2.1] and got["coverage"] == 0.9
    assert got["contention"]["max_steal"] == 0.15


def test_plan_names_wait_and_steal(monkeypatch: pytest.MonkeyPatch) -> None:
    text = " ".join(run_plan(monkeypatch, plan_doc()).stdout.split())
    assert (
        "host contention during the shadow run: vCPU wait 2 %, host steal 15 % (limit 10 %), "
        "over it in s0-cpu"
    ) in text


def test_plan_of_a_prediction_without_intervals_invents_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = run_plan(monkeypatch, plan_doc()).stdout
    assert "no interval recorded" in text and "interval (" not in text
    rows = [line for line in text.splitlines() if line.startswith(("│ vCPU", "│ MiB"))]
    assert len(rows) == 2 and all("—" in row for row in rows)
