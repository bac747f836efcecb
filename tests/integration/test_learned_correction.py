"""The closed loop teaches the ramp: completed launches are recorded by the
controller's own observing step, `vmshadow model train` learns the correction
from the store, and the next loaded launch is predicted by the learned engine.

The launches run on a plain store (no guest): each one's shadow samples are a
ramp whose cost per request differs by launch, its prediction is the real
ramp engine's, and its VM uses less than the ramp said (as the closed loop
measured: vCPU 0.9x, IOPS 0.7x), which is what the correction must learn."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmshadow.cli.main import app
from vmshadow.config import Settings, load_settings
from vmshadow.controller.context import Context
from vmshadow.controller.observing import _complete
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.image.files import ImageFiles
from vmshadow.predict.choice import LivePredictor
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store, now

# scikit-learn asks joblib for the physical cores, which runs `lscpu`.
pytestmark = pytest.mark.subprocess

S = TransitionState
REQUESTED = Allocation(4, 4096)
REALIZED = {"vcpus": 0.9, "memory_mib": 1.0, "iops": 0.7}
LAUNCHES = 22


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("VMSHADOW_DATABASE_URL", raising=False)
    return load_settings()


def shadow_points(cost: float, rng: random.Random) -> list[UsagePoint]:
    """The web profile's first three ramp steps (25, 50, 100 requests/s)."""
    out = []
    for step, load in enumerate((25.0, 50.0, 100.0)):
        for i in range(8):
            t = step * 100.0 + i
            busy = cost * load * rng.uniform(0.95, 1.05)
            mem = 96 + 0.5 * load
            io = 0.05 * load
            out += [
                UsagePoint(t, Source.HOST, f"s{step}-cpu", busy, None, 0, 0, 0, 0),
                UsagePoint(t, Source.GUEST, f"s{step}-memory", 0.05, mem, 0, 0, 0, 0),
                UsagePoint(t + 30, Source.HOST, f"s{step}-io", 0.05, None, 0, io, 0, 4096 * io),
            ]
    return out


def vm_points(p: Prediction, rng: random.Random) -> list[UsagePoint]:
    """What the launched VM used: the extrapolation times the realized ratio."""
    ex = p.detail["extrapolated"]
    assert isinstance(ex, dict)
    out = []
    for i in range(30):
        f = {r: ex[r] * REALIZED[r] * rng.uniform(0.93, 1.0) for r in REALIZED}
        out.append(
            UsagePoint(float(i), Source.HOST, None, f["vcpus"], f["memory_mib"], 0, f["iops"], 0, 0)
        )
    return out


def complete_launch(ctx: Context, n: int, load: float, rng: random.Random) -> Prediction:
    """One launch through to completed, recorded by ``observing._complete``."""
    store = ctx.store
    row = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name=f"vm{n}", profile="web", requested=REQUESTED, load=load
    )
    store.advance(row.id, S.SHADOWING, "shadow")
    store.advance(row.id, S.PROFILING, "profiling")
    points = shadow_points(0.002 + 0.0002 * (n % 7), rng)
    store.add_samples(row.id, "shadow", 0, points)
    p = ctx.predictor.predict(points, profile="web", load=load, target=REQUESTED)
    store.add_prediction(row.id, p)
    store.advance(row.id, S.PREDICTED, "predicted")
    rec = p.recommended
    store.advance(row.id, S.LAUNCHING, "go", final_vcpus=rec.vcpus, final_memory_mib=rec.memory_mib)
    store.advance(row.id, S.RUNNING, "running", running_since=now())
    store.add_samples(row.id, "vm", 0, vm_points(p, rng))
    _complete(ctx, store.get(row.id), now())
    assert store.get(row.id).state == S.COMPLETED.value
    return p


def test_completed_launches_train_the_correction_the_next_launch_uses(
    settings: Settings, tmp_path: Path
) -> None:
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    live = LivePredictor(settings)
    ctx = Context(
        settings=settings,
        store=store,
        image=ImageFiles.at(tmp_path / "image"),
        accelerator=Accelerator.TCG,
        predictor=live,
        owner="test",
        pool=pool_from_settings(settings),
    )
    rng = random.Random(7)
    for n in range(LAUNCHES):
        p = complete_launch(ctx, n, 200.0 + 100 * (n % 5), rng)
        assert p.method == "ramp-extrapolation"
        need = settings.controller.learned_min_history
        assert p.label.endswith(f"(no learned correction trained; it needs {need} history records)")
    rows = store.all_history()
    assert len(rows) == LAUNCHES
    first = rows[0].shadow
    assert first["engine"] == "ramp-extrapolation"
    assert first["extrapolated"]["vcpus"] > 0 and first["beyond_ramp"] > 1

    r = CliRunner(mix_stderr=False).invoke(app, ["model", "train", "--history", "store", "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    meta = json.loads(r.stdout)["correction"]
    assert meta["method"] == "learned-correction"
    assert meta["ramp_records"] == LAUNCHES
    held = meta["held_out"]["resources"]
    # On launches of loads its fold models never saw, the corrected
    # recommendation wastes less IOPS than the ramp alone, within its rate.
    assert held["iops"]["corrected"]["waste"] < held["iops"]["ramp_alone"]["waste"]
    assert held["iops"]["corrected"]["under"] <= 0.1

    r = CliRunner(mix_stderr=False).invoke(
        app, ["model", "train", "--history", "store"], env={"COLUMNS": "300"}
    )
    assert r.exit_code == 0, r.stdout + r.stderr
    said = f"learned correction of the ramp: {LAUNCHES} records ({LAUNCHES} completed loaded"
    assert said in r.stdout
    assert "IOPS held out: corrected" in r.stdout

    # The running service's predictor picks the correction up without a restart.
    p = complete_launch(ctx, LAUNCHES, 700.0, rng)
    assert p.method == "ramp+learned-correction"
    assert p.label.startswith("ramp+learned-correction: physical extrapolation from 3 ramp steps")
    assert p.detail["history_count"] == LAUNCHES == p.history_size
    ex, median = p.detail["extrapolated"], p.detail["median"]
    assert isinstance(ex, dict) and isinstance(median, dict)
    assert median["iops"] == pytest.approx(0.7 * 0.965 * ex["iops"], rel=0.15)
    assert set(p.detail["interval"]) == {"vcpus", "memory_mib", "iops"}  # type: ignore[arg-type]
    # Its own history row keeps the uncorrected extrapolation, not its answer.
    last = store.all_history()[-1].shadow
    assert last["engine"] == "ramp+learned-correction"
    assert last["extrapolated"] == ex
    assert last["predicted"] != ex
