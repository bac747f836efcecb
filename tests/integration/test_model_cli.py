"""`vmshadow history import`, `model train` and `model evaluate` on a real subset
of the Lumos data (tests/data/lumos-mini: two families, eight jobs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmshadow.cli.main import app
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Requirement
from vmshadow.predict.predictor import HistoryModelPredictor

MINI = Path(__file__).parents[1] / "data" / "lumos-mini"


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("VMSHADOW_DATABASE_URL", raising=False)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner(mix_stderr=False).invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_evaluate_prints_model_and_baselines_side_by_side() -> None:
    code, stdout, _ = run("model", "evaluate", "--history", str(MINI), "--json")
    assert code == 0, stdout
    doc = json.loads(stdout)
    assert doc["grouped_by"] == "job" and doc["folds"] == 5
    assert doc["history"]["jobs"] == 8
    assert doc["tested"] == 28  # c5.large -> c5.2xlarge and m5.large -> m5.2xlarge
    assert "skipped" not in doc["read"] or "1 not completed" in doc["read"]
    for res in ("vcpus", "memory_mib", "iops"):
        methods = doc["resources"][res]["methods"]
        for name in ("model-fixed", "model-calibrated", "shadow", "linear"):
            assert 0 <= methods[name]["under"] <= 1, name
    assert doc["resources"]["iops"]["methods"]["full"] is None  # provisioned IOPS unknown
    for res in ("vcpus", "memory_mib", "iops"):
        # one run per job, input and type in this subset: no run-to-run noise to cost
        hindsight = doc["resources"][res]["hindsight"]
        assert hindsight["groups"] == 28 and hindsight["groups_with_repeats"] == 0
        assert hindsight["margin"] == 1.0 and hindsight["waste"] == 0.0
    assert doc["seconds"] > 0

    code, stdout, _ = run("model", "evaluate", "--history", str(MINI), "--margin-mode", "fixed")
    assert code == 0, stdout
    for text in ("shadow usage x1.2", "linear in vCPUs x1.2", "full VM as provisioned"):
        assert text in stdout
    assert "evaluation took" in stdout
    assert "hindsight: told each group's typical need, one margin x1 gives 0.0% under" in stdout


def test_out_of_distribution_protocols_from_the_cli() -> None:
    """Leave one family out (trained on c5, scored on m5 and the other way), and
    trained at 1 s, scored on the same history resampled to 5 s."""
    code, stdout, stderr = run(
        "model", "evaluate", "--history", str(MINI), "--protocol", "lofo", "--json"
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["protocol"] == "lofo" and sorted(doc["by_family"]) == ["c5", "m5"]
    for res in ("vcpus", "memory_mib"):
        assert 0 <= doc["overall"]["resources"][res]["methods"]["model-calibrated"]["under"] <= 1
    code, stdout, stderr = run(
        "model", "evaluate", "--history", str(MINI), "--protocol", "resample5"
    )
    assert code == 0, stderr
    assert "trained at 1 s, scored at 5 s" in stdout and "trained and scored at 5 s" in stdout
    saved = run("model", "evaluate", "--history", str(MINI), "--protocol", "lofo", "--model", "x")
    assert saved[0] != 0 and "--protocol" in saved[2]


def test_import_twice_does_not_double() -> None:
    code, first, _ = run("history", "import", "--format", "sar", str(MINI), "--json")
    assert code == 0, first
    code, again, _ = run("history", "import", "--format", "sar", str(MINI), "--json")
    a, b = json.loads(first), json.loads(again)
    assert a["imported"] == b["imported"] == b["history_records"] == 42
    assert b["replaced"] == 42
    assert a["skipped_not_completed"] == 1 and a["unreadable"] == 0


def test_train_from_the_store_and_predict(_data_dir: Path) -> None:
    assert run("history", "import", str(MINI), "--catalog", str(MINI / "vm-types.csv"))[0] == 0
    code, stdout, _ = run("model", "train", "--history", "store", "--json")
    assert code == 0, stdout
    meta = json.loads(stdout)
    assert meta["method"] == "quantile-model"
    assert meta["history_size"] == 42 and len(meta["sources"]) == 1
    assert meta["sources"][0].startswith(f"lumos:{MINI.resolve()}@")
    models = _data_dir / "models"
    assert (models / "models.joblib").is_file() and (models / "models.json").is_file()

    predictor = HistoryModelPredictor.load(models, shadow=Allocation(2, 4096))
    got = predictor.predict_from(
        Requirement(1.9, 1500, 100), {}, target=Allocation(vcpus=8, memory_mib=16384)
    )
    assert got.method == "quantile-model"
    assert "42 history records from 8 jobs" in got.label
    # the held-out track record travels with every prediction the model makes
    assert got.detail["held_out"] == meta["held_out"]
    assert meta["held_out"]["records"] == 42 and meta["held_out"]["folds"] == 8


def test_train_calibrated_from_a_folder_prints_the_time() -> None:
    code, stdout, _ = run("model", "train", "--history", str(MINI), "--margin-mode", "calibrated")
    assert code == 0, stdout
    assert "calibrated margins" in stdout and "training took" in stdout
    assert "(the margins were chosen on them), this model's recommendation fell short" in " ".join(
        stdout.split()
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["model", "evaluate", "--history", "/nonexistent/runs"], "--history"),
        (["model", "train", "--history", "store"], "--history"),
        (
            ["model", "evaluate", "--history", str(MINI), "--catalog", "/nonexistent.csv"],
            "--catalog",
        ),
        (["history", "import", "/nonexistent/runs"], "DIR"),
        (["history", "import", str(MINI), "--catalog", "/nonexistent.csv"], "--catalog"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], option: str) -> None:
    code, stdout, stderr = run(*args)
    assert code == 1
    assert option in stderr
    assert "Traceback" not in stdout + stderr
