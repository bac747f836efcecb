"""The web UI's routes on libvirt's test driver: pages, fragments, headers, auth."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import vmshadow.web
from vmshadow.config import Settings, load_settings
from vmshadow.server import Service, build

pytestmark = pytest.mark.libvirt


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    settings: Settings = load_settings(
        {("data_dir",): str(tmp_path), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )
    return build(settings, with_controller=False)


def test_pages_load_nothing_from_elsewhere(client: TestClient) -> None:
    for path in ("/", "/new", "/login", "/new?kind=resize&vm=web1"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "http" not in r.text.replace("http-equiv", "")  # no absolute URL at all
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    assert client.get("/static/vendor/uPlot.LICENSE").text.startswith("The MIT License")


def test_ui_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    # /metrics sits where Prometheus looks for it, beside the API, not in the UI.
    assert all(p.startswith("/api/v1/") or p == "/metrics" for p in paths), sorted(paths)


def test_auth_check_tells_a_wrong_token(client: TestClient, svc: Service) -> None:
    assert client.get("/ui/auth-check").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/ui/auth-check", headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {svc.token}"}
    assert client.get("/ui/auth-check", headers=right).status_code == 204


def test_transition_page_and_its_parts(client: TestClient, svc: Service) -> None:
    body = {"vm_name": "web1", "profile": "smoke", "requested": {"vcpus": 1, "memory_mib": 512}}
    auth = {"Authorization": f"Bearer {svc.token}"}
    tid = client.post("/api/v1/transitions", json=body, headers=auth).json()["id"]
    page = client.get(f"/t/{tid}")
    assert page.status_code == 200 and 'data-part="decide"' in page.text
    parts = client.get(f"/ui/t/{tid}/parts").json()
    assert parts["state"] == "requested" and parts["decide_key"] == "requested/None/False"
    assert set(parts["parts"]) == {
        "header",
        "steps",
        "prediction",
        "decide",
        "realized",
        "timeline",
    }
    assert "launch of web1 requested" in parts["parts"]["timeline"]
    assert "Placement" not in parts["parts"]["header"]  # nothing placed yet
    # Placed (as the controller records it): the page says where and why.
    svc.store.update_fields(
        tid, shadow_host="a", vm_host="b", placement="on b, the freest host with CPU model m1"
    )
    header = client.get(f"/ui/t/{tid}/parts").json()["parts"]["header"]
    assert "shadow on a; VM on b, the freest host with CPU model m1" in header
    assert client.get("/ui/t/nope/parts").status_code == 404
    missing = client.get("/t/nope")
    assert missing.status_code == 404 and "There is no transition nope." in missing.text


def test_names_are_escaped(client: TestClient) -> None:
    r = client.get('/new?kind=resize&vm="><script>alert(1)</script>')
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text


def test_a_resize_form_starts_from_the_vms_own_size(client: TestClient) -> None:
    r = client.get("/new?kind=resize&vm=web1")
    assert (
        'id="vcpus" name="vcpus" type="number" inputmode="numeric" min="1" step="1" value=""'
        in r.text
    )
    assert 'value="resize" checked' in r.text and 'value="web1"' in r.text


def test_every_file_the_pages_need_ships_in_the_package() -> None:
    """The templates and static files are package data: a file no glob in
    pyproject.toml matches works from a clone and is missing from a wheel."""
    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["vmshadow"]
    pkg = Path(vmshadow.__file__).parent
    web = Path(vmshadow.web.__file__).parent
    files = [f for d in ("templates", "static") for f in (web / d).rglob("*") if f.is_file()]
    assert any(f.name == "uPlot.iife.min.js" for f in files)
    missing = [
        f.relative_to(pkg).as_posix()
        for f in files
        if not any(f.relative_to(pkg).match(g) for g in globs)
    ]
    assert missing == []
