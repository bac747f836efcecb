"""A database that fails answers through the API as a clean 503 in the
documented ``{error, field, reason}`` shape: the store's ``StoreError``, not a
SQLAlchemy traceback and not a bare "internal error"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from vmshadow.config import Settings, load_settings
from vmshadow.server import Service, build

pytestmark = pytest.mark.libvirt
API = "/api/v1"


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    settings: Settings = load_settings(
        {("data_dir",): str(tmp_path), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )
    return build(settings, with_controller=False)


def launch(client: TestClient, svc: Service, name: str) -> Any:
    return client.post(
        f"{API}/transitions",
        json={"vm_name": name, "profile": "smoke", "requested": {"vcpus": 1, "memory_mib": 512}},
        headers={"Authorization": f"Bearer {svc.token}"},
    )


def assert_store_error(r: Any, reason: str) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert set(body) >= {"error", "field", "reason"}
    assert body["field"] is None
    assert body["error"].startswith("database error during ")
    assert reason in body["error"] and body["reason"] == body["error"]
    assert "[SQL" not in r.text and "Traceback" not in r.text


def test_a_read_only_database_answers_503(client: TestClient, svc: Service) -> None:
    assert launch(client, svc, "web1").status_code == 201
    engine = svc.store.engine

    # Every new connection is read-only (SQLite's own switch), as a database
    # on a full or read-only volume would be; the pool is emptied so it applies.
    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only=ON")

    engine.dispose()
    assert client.get(f"{API}/transitions").status_code == 200  # reads still work
    assert_store_error(launch(client, svc, "web2"), "readonly database")


def test_a_missing_table_answers_503(client: TestClient, svc: Service) -> None:
    created = launch(client, svc, "web1")
    assert created.status_code == 201
    with svc.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE events"))
    assert_store_error(
        client.get(f"{API}/transitions/{created.json()['id']}"), "no such table: events"
    )
