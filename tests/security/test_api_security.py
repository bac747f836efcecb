"""The API's guards, checked on every route the app really has (enumerated from the
app, not from a hand list): no mutation without the token, bodies bounded, the
database and the token file private, loopback by default."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from vmshadow.config import Settings, load_settings
from vmshadow.server import Service, build

pytestmark = [pytest.mark.security, pytest.mark.libvirt]

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# POST routes that change nothing, each with the reason it may go without a token.
READ_ONLY_POSTS = {
    # Computes the warnings an override would get; stores nothing.
    "/api/v1/transitions/{tid}/override/review",
}
MAX_BODY = 2048


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("libvirt_uri",): "test:///default",
            ("api", "max_body_bytes"): MAX_BODY,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )


@pytest.fixture
def svc(settings: Settings) -> Iterator[Service]:
    # A permissive umask: the files must be private by construction, not by luck.
    old = os.umask(0)
    try:
        yield build(settings, with_controller=False)
    finally:
        os.umask(old)


def mutating_routes(svc: Service) -> list[tuple[str, str]]:
    out = []
    for route in svc.app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(route.methods & MUTATING):
            if route.path not in READ_ONLY_POSTS:
                out.append((method, route.path))
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_enumeration_sees_the_mutations(svc: Service) -> None:
    routes = {p for _m, p in mutating_routes(svc)}
    # A guard on the guard: an enumeration that found nothing would pass vacuously.
    assert {"/api/v1/transitions", "/api/v1/transitions/{tid}/confirm"} <= routes
    for path in READ_ONLY_POSTS:
        assert any(isinstance(r, APIRoute) and r.path == path for r in svc.app.routes), path


def test_every_mutation_refuses_a_missing_or_wrong_token(client: TestClient, svc: Service) -> None:
    for method, path in mutating_routes(svc):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            r = client.request(method, concrete(path), json={}, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert svc.store.list_transitions(limit=10) == []


def test_every_mutation_refuses_an_oversized_or_unsized_body(
    client: TestClient, svc: Service
) -> None:
    auth = {"Authorization": f"Bearer {svc.token}", "content-type": "application/json"}
    for method, path in mutating_routes(svc):
        body = b'{"x": "' + b"a" * MAX_BODY + b'"}'
        r = client.request(method, concrete(path), content=body, headers=auth)
        assert r.status_code == 413, (method, path, r.status_code)

        def chunks() -> Iterator[bytes]:
            yield b"{}"

        r = client.request(method, concrete(path), content=chunks(), headers=auth)
        assert r.status_code == 411, (method, path, r.status_code)
    # Just under the limit is read (and then judged on its content).
    small = b'{"vm_name": "a", "profile": "smoke", "pad": "' + b"a" * 1500 + b'"}'
    r = client.post("/api/v1/transitions", content=small, headers=auth)
    assert r.status_code == 422 and r.json()["field"] == "pad"


def test_database_and_token_files_are_private(
    client: TestClient, svc: Service, settings: Settings
) -> None:
    auth = {"Authorization": f"Bearer {svc.token}"}
    body = {"vm_name": "web1", "profile": "smoke", "requested": {"vcpus": 1, "memory_mib": 512}}
    assert client.post("/api/v1/transitions", json=body, headers=auth).status_code == 201
    db = settings.data_dir / "vmshadow.db"
    files = [settings.token_file, db]
    # SQLite's WAL and shared-memory files hold the same data as the database.
    files += [p for p in (Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, (path, oct(path.stat().st_mode))


def test_the_service_binds_loopback_by_default(settings: Settings) -> None:
    assert settings.api.host == "127.0.0.1"
