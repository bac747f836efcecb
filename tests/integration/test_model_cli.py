"""`vmshadow model evaluate` and `history import` on a real subset of the Lumos data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmshadow.cli import app

MINI = Path(__file__).parents[1] / "data" / "lumos-mini"


def test_evaluate_prints_model_and_baselines() -> None:
    r = CliRunner().invoke(app, ["model", "evaluate", "--history", str(MINI), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["skipped_not_completed"] == 1
    for res in ("vcpus", "memory_mib", "iops"):
        row = doc["resources"][res]
        assert 0 <= row["model"]["under"] <= 1
        assert row["b_shadow"] is not None and row["b_linear"] is not None
    assert doc["resources"]["iops"]["b_full"] is None  # provisioned IOPS unknown here


def test_import_twice_does_not_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    runner = CliRunner()
    first = runner.invoke(app, ["history", "import", "--format", "sar", str(MINI), "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["history", "import", "--format", "sar", str(MINI), "--json"])
    a, b = json.loads(first.stdout), json.loads(again.stdout)
    assert a["imported"] == b["imported"] == b["history_records"] > 0
    assert a["skipped_not_completed"] == 1


def test_missing_history_is_a_clear_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["model", "evaluate", "--history", str(tmp_path / "none")])
    assert r.exit_code == 1
    assert "--catalog" in r.output or "--history" in r.output
    assert "Traceback" not in r.output
