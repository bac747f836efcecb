"""History sources: two data sets both in folders named `1 second` keep each
other; re-importing one replaces only itself; ls and rm; rows imported before
sources existed keep working. And `model evaluate --model` on other data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmshadow.cli.main import app
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

DATA = Path(__file__).parents[1] / "data"
MINI = DATA / "lumos-mini"
SYSSTAT = DATA / "sysstat"


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("VMSHADOW_DATABASE_URL", raising=False)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner(mix_stderr=False).invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def one_second(root: Path, family: str) -> Path:
    """A data set of one family of lumos-mini in a folder named `1 second`."""
    folder = root / "1 second"
    for t in MINI.glob(f"{family}.*"):
        shutil.copytree(t, folder / t.name)
    shutil.copy(MINI / "vm-types.csv", folder)
    return folder


def imported(*args: str) -> dict[str, object]:
    code, stdout, stderr = run("history", "import", *args, "--json")
    assert code == 0, stdout + stderr
    doc: dict[str, object] = json.loads(stdout)
    return doc


def sources() -> dict[str, int]:
    code, stdout, _ = run("history", "ls", "--json")
    assert code == 0, stdout
    return {s["source"]: s["records"] for s in json.loads(stdout)}


def test_two_data_sets_in_folders_of_one_name_keep_each_other(tmp_path: Path) -> None:
    c5 = one_second(tmp_path / "a", "c5")
    m5 = one_second(tmp_path / "b", "m5")
    a = imported(str(c5))
    b = imported("--format", "lumos", str(m5))
    assert a["imported"] == 28 and b["imported"] == 14
    assert b["replaced"] == 0 and b["history_records"] == 42
    assert a["source"] != b["source"] and "1 second@" in str(a["source"])
    assert sources() == {a["source"]: 28, b["source"]: 14}

    # The same data set again replaces itself only, whatever path it is copied to.
    again = imported(str(c5))
    assert again["replaced"] == 28 and again["history_records"] == 42
    moved = shutil.copytree(c5, tmp_path / "c" / "elsewhere")
    copy = imported(str(moved))
    assert copy["replaced"] == 28 and copy["replaced_sources"] == [a["source"]]
    assert sources() == {copy["source"]: 28, b["source"]: 14}

    # An operator's own name for it.
    named = imported(str(m5), "--source", "m5-lab")
    assert named["source"] == "m5-lab" and named["history_records"] == 56
    code, _, stderr = run("history", "rm", "nope", "--yes")
    assert code == 1 and "source" in stderr and "nope" in stderr
    code, stdout, _ = run("history", "rm", "m5-lab", "--yes", "--json")
    assert code == 0 and json.loads(stdout) == {
        "source": "m5-lab",
        "removed": 14,
        "history_records": 42,
    }
    code, _, _ = run("history", "rm", str(b["source"]))
    assert code == 1  # no --yes and no answer: nothing removed
    assert sources()[str(b["source"])] == 14


def test_rows_from_before_sources_still_train_and_are_pointed_at(_data_dir: Path) -> None:
    store = Store(make_engine(f"sqlite:///{_data_dir / 'vmshadow.db'}"))
    migrate(store.engine)
    first = imported(str(MINI))
    rows = store.all_history(sources=[str(first["source"])])
    # As an older vmshadow stored them: under the folder's name, no source record.
    store.replace_history("sar:lumos-mini", [r.record for r in rows if r.record])
    assert store.remove_source(str(first["source"])) == 42
    assert sources() == {"sar:lumos-mini": 42}
    code, stdout, _ = run("history", "ls")
    assert code == 0 and "sar:lumos-mini" in stdout
    code, stdout, _ = run("model", "train", "--history", "store", "--json")
    assert code == 0 and json.loads(stdout)["history_size"] == 42
    again = imported(str(MINI))
    assert again["legacy_same_name"] == "sar:lumos-mini" and again["replaced"] == 0


def test_evaluate_a_saved_model_on_other_data(tmp_path: Path) -> None:
    models = tmp_path / "m"
    code, stdout, _ = run("model", "train", "--history", str(MINI), "--models-dir", str(models))
    assert code == 0, stdout
    code, stdout, _ = run("model", "evaluate", "--history", str(MINI), "--json")
    retrained = json.loads(stdout)
    args = ["model", "evaluate", "--model", str(models), "--history"]
    code, stdout, stderr = run(*args, str(SYSSTAT / "manifest.csv"), "--by", "family", "--json")
    assert code == 0, stdout + stderr
    doc = json.loads(stdout)
    assert doc["folds"] == 0 and doc["tested"] == 1 and doc["model"]["seen_sources"] == []
    assert doc["model"]["history_size"] == 42
    assert set(doc) - {"model", "by_family"} == set(retrained)  # the same shape
    for res, r in doc["resources"].items():
        assert set(r) == set(retrained["resources"][res])
        assert 0 <= r["methods"]["model-fixed"]["under"] <= 1
    assert list(doc["by_family"]) == ["lab"] and doc["by_family"]["lab"]["tested"] == 1
    # On the history it learnt from: scored, and said so.
    code, stdout, _ = run(*args, str(MINI), "--by", "family")
    text = " ".join(stdout.split())
    assert code == 0 and "not held out" in text and "per family" in text


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["model", "evaluate", "--model", "/nonexistent", "--history", str(MINI)], "--model"),
        (["model", "evaluate", "--by", "family", "--history", str(MINI)], "--by"),
        (["history", "import", "--format", "sysstat", str(MINI)], "DIR"),
        (["history", "import", str(MINI), "--source", " "], "--source"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], option: str) -> None:
    code, stdout, stderr = run(*args)
    assert code == 1 and option in stderr, stdout + stderr
    assert "Traceback" not in stdout + stderr
