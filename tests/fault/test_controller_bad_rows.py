"""A bad row cannot stall the controller (issue 14, item 5).

``scheduled_at: "0001-01-01T00:00:00Z"`` was accepted; every controller pass
then died on ``OverflowError`` in ``steps.due()`` and every other transition
stayed ``requested``. Now the API refuses such a time (422 naming the field),
keeps the instant of any offset it is given, and a row already in the database
fails alone, with its reason, while the pass goes on with the others.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from agent_peer import peer, wait_closed
from fastapi.testclient import TestClient
from test_controller_faults import make_world

from vmshadow.config import Settings, load_settings
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.transition import TransitionKind
from vmshadow.image.builder import input_digest
from vmshadow.server import Service
from vmshadow.store.repository import aware

pytestmark = [pytest.mark.fault, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {("data_dir",): str(tmp_path), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )


@pytest.fixture
def service(settings: Settings, svc: Service) -> TransitionService:
    return TransitionService(settings, svc.store)


def launch(name: str, at: datetime | None) -> NewTransition:
    return NewTransition(
        kind=TransitionKind.LAUNCH,
        vm_name=name,
        profile="smoke",
        requested=Allocation(1, 512),
        scheduled_at=at,
    )


@pytest.mark.parametrize(
    "at",
    ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"],
    ids=["year-1", "year-9999", "year-1-ahead-of-utc"],
)
def test_the_api_refuses_a_schedule_out_of_bounds(
    svc: Service, client: TestClient, at: str
) -> None:
    r = client.post(
        "/api/v1/transitions",
        json={
            "vm_name": "web1",
            "profile": "smoke",
            "requested": {"vcpus": 1, "memory_mib": 512},
            "scheduled_at": at,
        },
        headers={"Authorization": f"Bearer {svc.token}"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "scheduled_at"
    assert r.json()["reason"]
    assert svc.store.list_transitions() == []


def test_the_bounds_come_from_the_settings(settings: Settings, service: TransitionService) -> None:
    ctl = settings.controller
    soon = datetime.now(UTC)
    with pytest.raises(ConfigError) as past:
        service.create(launch("a", soon - timedelta(seconds=ctl.schedule_past_s + 60)))
    assert past.value.field == "scheduled_at" and "in the past" in past.value.reason
    with pytest.raises(ConfigError) as ahead:
        service.create(launch("a", soon + timedelta(seconds=ctl.schedule_ahead_s + 60)))
    assert ahead.value.field == "scheduled_at" and "ahead" in ahead.value.reason
    # Just inside both bounds: accepted.
    service.create(launch("b", soon - timedelta(seconds=ctl.schedule_past_s - 60)))
    service.create(launch("c", soon + timedelta(seconds=ctl.schedule_ahead_s - 60)))


def test_a_schedule_keeps_its_instant_in_utc(svc: Service, service: TransitionService) -> None:
    local = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    offset = local.astimezone(timezone(timedelta(hours=5, minutes=30)))
    row = service.create(launch("offset", offset))
    stored = aware(svc.store.get(row.id).scheduled_at)
    assert stored == local and stored is not None and stored.utcoffset() == timedelta(0)
    assert service.view(svc.store.get(row.id))["scheduled_at"] == local.isoformat()
    naive = service.create(launch("naive", local.replace(tzinfo=None)))
    assert aware(svc.store.get(naive.id).scheduled_at) == local  # naive is read as UTC


def test_a_bad_row_fails_alone_and_the_others_go_on(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    with peer(sock, wait_closed), make_world(tmp_path, sock, input_digest()[0]) as world:
        # As a database written before the bound holds it: the store takes it as is.
        bad = world.store.create_transition(
            kind=TransitionKind.LAUNCH,
            vm_name="ancient",
            profile="smoke",
            requested=Allocation(1, 512),
            scheduled_at=datetime(1, 1, 1, tzinfo=UTC),
        ).id
        good = world.create("app1")
        world.wait("the bad row to fail", lambda: world.state(bad) == "failed")
        world.wait("the good one to leave requested", lambda: world.state(good) != "requested")
        assert world.state(good) == "shadowing"
        reason = str(world.store.get(bad).reason)
        assert "scheduled_at" in reason and "out of range" in reason, reason
        assert any(
            e.state == "failed" and "scheduled_at" in e.message for e in world.store.events(bad)
        )
