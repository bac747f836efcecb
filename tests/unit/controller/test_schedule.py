"""A scheduled transition starts its shadow early enough for the prediction to be ready."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmshadow.config import load_settings
from vmshadow.controller.steps import due, lead_time_s
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store, now


@pytest.fixture
def ctx(tmp_path: Path) -> SimpleNamespace:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    settings = load_settings(
        {("controller", "default_lead_s"): 90}, config_path=tmp_path / "x", environ={}
    )
    return SimpleNamespace(settings=settings, store=Store(engine))


def timed(ctx: SimpleNamespace, name: str, seconds: float) -> None:
    row = ctx.store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name=name, profile="smoke", requested=Allocation(1, 512)
    )
    start = now() - timedelta(hours=1)
    ctx.store.update_fields(
        row.id, shadow_started_at=start, predicted_at=start + timedelta(seconds=seconds)
    )


def test_default_lead_before_any_shadow_was_timed(ctx: SimpleNamespace) -> None:
    assert lead_time_s(ctx) == 90


def test_lead_follows_measured_shadows(ctx: SimpleNamespace) -> None:
    for i, s in enumerate([40, 50, 60]):
        timed(ctx, f"vm{i}", s)
    assert lead_time_s(ctx) == 75  # 1.5 x median 50, above the slowest (60)
    timed(ctx, "slow", 200)
    assert lead_time_s(ctx) == 200  # never less than the slowest recent one


def test_due_only_within_the_lead(ctx: SimpleNamespace) -> None:
    def row(at_s: float | None) -> SimpleNamespace:
        return SimpleNamespace(
            scheduled_at=None if at_s is None else now() + timedelta(seconds=at_s)
        )

    assert due(ctx, row(None))  # not scheduled: now
    assert due(ctx, row(60))  # 60 s away, lead 90 s: start shadowing
    assert not due(ctx, row(600))
