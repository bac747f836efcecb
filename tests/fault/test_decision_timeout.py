"""An undecided prediction does not hold its capacity forever (issue 14, item 7).

A ``predicted`` transition nobody decides keeps its VM's room booked on a host;
another transition once waited behind one with "no host has room for a shadow".
After ``controller.decision_timeout_s`` the controller cancels it, says why in
the event log and removes the pending VM, as a cancel does. The API view and
the transition page say when that happens (``decision_expires_at``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from agent_peer import peer, wait_closed
from fastapi.testclient import TestClient
from test_controller_faults import World, make_world

from vmshadow.config import Settings, load_settings
from vmshadow.controller import steps
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.image.builder import input_digest
from vmshadow.server import Service
from vmshadow.store.repository import aware, now

pytestmark = [pytest.mark.fault, pytest.mark.libvirt, pytest.mark.subprocess]
S = TransitionState
API = "/api/v1"
PRED = Prediction("shadow-measured", "x1.2", 0, 1.2, Requirement(0.5, 300, 10), Allocation(1, 512))


def predicted_by_hand(world: World, name: str) -> str:
    """A transition in ``predicted`` with its pending VM defined, as the controller
    leaves one: made under a lease of ours, so the controller never drives it."""
    store = world.store
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH,
        vm_name=name,
        profile="smoke",
        requested=Allocation(1, 512),
        scheduled_at=now() + timedelta(days=30),  # not due: the controller leaves it
    ).id
    assert store.take_lease(tid, "the-test", 3600)
    store.advance(tid, S.SHADOWING, "shadowing")
    store.advance(tid, S.PROFILING, "profiling")
    store.add_prediction(tid, PRED)
    store.advance(tid, S.PREDICTED, "predicted", predicted_at=now())
    assert world.controller.ctx is not None
    steps.define_pending(world.controller.ctx, world.hv, store.get(tid), PRED.recommended)
    store.release_lease(tid, "the-test")
    return tid


def test_an_undecided_prediction_is_cancelled_after_the_timeout(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    with peer(sock, wait_closed), make_world(tmp_path, sock, input_digest()[0]) as world:
        timeout_s = world.settings.controller.decision_timeout_s
        assert timeout_s == 86400  # the default: a day
        stale = predicted_by_hand(world, "stale")
        fresh = predicted_by_hand(world, "fresh")
        assert world.hv.full_vm_info("stale") is not None
        view = world.service.view(world.store.get(stale))
        predicted_at = aware(world.store.get(stale).predicted_at)
        assert predicted_at is not None
        expires = datetime.fromisoformat(view["decision_expires_at"])
        assert expires == predicted_at + timedelta(seconds=timeout_s)
        # A day and a minute pass for one of them.
        world.store.update_fields(stale, predicted_at=now() - timedelta(seconds=timeout_s + 60))
        world.controller.wake.set()
        world.wait("the stale one to be cancelled", lambda: world.state(stale) == "cancelled")
        row = world.store.get(stale)
        assert row.reason is not None and "decision_timeout_s" in row.reason
        assert any(
            e.state == "cancelled" and "no decision within 1 day" in e.message
            for e in world.store.events(stale)
        )
        world.wait("its pending VM to go", lambda: world.hv.full_vm_info("stale") is None)
        assert world.service.view(world.store.get(stale))["decision_expires_at"] is None
        # The other one, within its day, still waits for its user.
        assert world.state(fresh) == "predicted"
        assert world.hv.full_vm_info("fresh") is not None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            ("data_dir",): str(tmp_path),
            ("libvirt_uri",): "test:///default",
            ("controller", "decision_timeout_s"): 3600,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )


def test_the_api_and_the_page_say_when_the_decision_expires(
    svc: Service, client: TestClient
) -> None:
    auth = {"Authorization": f"Bearer {svc.token}"}
    body = {"vm_name": "web1", "profile": "smoke", "requested": {"vcpus": 1, "memory_mib": 512}}
    tid = client.post(f"{API}/transitions", json=body, headers=auth).json()["id"]
    assert client.get(f"{API}/transitions/{tid}").json()["decision_expires_at"] is None
    svc.store.advance(tid, S.SHADOWING, "shadowing")
    svc.store.advance(tid, S.PROFILING, "profiling")
    svc.store.add_prediction(tid, PRED)
    at = now()
    svc.store.advance(tid, S.PREDICTED, "predicted", predicted_at=at)
    doc = client.get(f"{API}/transitions/{tid}").json()
    expires = doc["decision_expires_at"]
    assert datetime.fromisoformat(expires) == at + timedelta(seconds=3600)
    assert expires.endswith("+00:00")
    page = client.get(f"/t/{tid}").text
    assert 'id="decision-expires"' in page and f'datetime="{expires}"' in page
    assert client.post(f"{API}/transitions/{tid}/confirm", headers=auth).status_code == 200
    assert client.get(f"{API}/transitions/{tid}").json()["decision_expires_at"] is None
    assert 'id="decision-expires"' not in client.get(f"/t/{tid}").text
