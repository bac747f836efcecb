"""``GET /transitions/{id}/recommendation/{format}`` on libvirt's test driver,
without a controller (the store's real path up to a prediction stands in for
it, as in test_api.py); ``vmshadow show --emit`` is in test_cli_emit.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api import API, auth, launch_body, predicted
from test_api import settings as settings

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Requirement
from vmshadow.emit import FORMATS, emit, from_view
from vmshadow.server import Service

pytestmark = pytest.mark.libvirt


def launched(client: TestClient, svc: Service) -> str:
    r = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_is_plain_text_of_the_recommendation(
    client: TestClient, svc: Service, fmt: str
) -> None:
    tid = launched(client, svc)
    predicted(svc, tid, Requirement(0.9, 300, 100), Allocation(1, 768, 120))
    r = client.get(f"{API}/transitions/{tid}/recommendation/{fmt}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    doc = client.get(f"{API}/transitions/{tid}").json()
    assert r.text == emit(fmt, from_view(doc))
    assert "768" in r.text and f"transition {tid}" in r.text


def test_before_a_prediction_it_is_a_conflict(client: TestClient, svc: Service) -> None:
    tid = launched(client, svc)
    r = client.get(f"{API}/transitions/{tid}/recommendation/virsh")
    assert r.status_code == 409, r.text
    assert "no recommendation yet" in r.json()["error"]


def test_an_unknown_format_names_the_field(client: TestClient, svc: Service) -> None:
    tid = launched(client, svc)
    r = client.get(f"{API}/transitions/{tid}/recommendation/ansible")
    assert r.status_code == 422 and r.json()["field"] == "format", r.text
    assert "virt-install" in r.json()["reason"]
    assert client.get(f"{API}/transitions/nope/recommendation/virsh").status_code == 404
