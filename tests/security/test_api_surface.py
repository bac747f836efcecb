"""The service's surface as a hostile client sees it (issue 14, items 11, 13, 14, 15):
one error shape for every error, no open redirect after sign-in, the Host header
checked against the bound names, reads guarded off loopback, and no token on stdout."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from vmshadow.config import Settings, load_settings
from vmshadow.server import Service, build

pytestmark = [pytest.mark.security, pytest.mark.libvirt]

API = "/api/v1"
# TestClient's own Host is "testserver": the app answers only the names it is bound to.
LOOPBACK = "http://127.0.0.1"


def make_settings(tmp_path: Path, **api: Any) -> Settings:
    overrides: dict[tuple[str, ...], Any] = {
        ("data_dir",): str(tmp_path / "data"),
        ("libvirt_uri",): "test:///default",
    }
    for key, value in api.items():
        overrides[("api", key)] = value
    return load_settings(overrides, config_path=tmp_path / "none.toml", environ={})


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    return build(make_settings(tmp_path), with_controller=False)


@pytest.fixture
def client(svc: Service) -> Iterator[TestClient]:
    with TestClient(svc.app, base_url=LOOPBACK, raise_server_exceptions=False) as c:
        yield c


def auth(svc: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token}"}


def assert_shape(resp: Any, status: int, field: str | None = "any") -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert {"error", "field", "reason"} <= set(body), body
    assert "detail" not in body, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["reason"], str) and body["reason"]
    if field != "any":
        assert body["field"] == field, body
    return dict(body)


# -- item 15: one error shape ---------------------------------------------------------------
def test_unknown_route_and_wrong_method_keep_the_shape(client: TestClient) -> None:
    assert_shape(client.get(f"{API}/no-such-thing"), 404)
    assert_shape(client.get("/static/no-such-file.js"), 404)
    assert_shape(client.delete(f"{API}/health"), 405, None)
    assert_shape(client.put(f"{API}/transitions"), 405, None)


def test_bad_json_keeps_the_shape(client: TestClient, svc: Service) -> None:
    headers = {**auth(svc), "Content-Type": "application/json"}
    broken = client.post(f"{API}/transitions", content=b'{"vm_name": ', headers=headers)
    assert_shape(broken, 422, "body")
    # 30,000 levels: Python's parser gives up with RecursionError, not a JSONDecodeError.
    deep = b"[" * 30_000 + b"]" * 30_000
    body = assert_shape(client.post(f"{API}/transitions", content=deep, headers=headers), 422)
    assert body["field"] == "body" and "deep" in body["reason"]
    wrong = client.post(f"{API}/transitions", json={"vm_name": 5}, headers=auth(svc))
    assert_shape(wrong, 422, "vm_name")


def test_too_large_and_server_errors_keep_the_shape(client: TestClient, svc: Service) -> None:
    big = client.post(f"{API}/transitions", content=b"x" * 70_000, headers=auth(svc))
    assert_shape(big, 413, "body")
    # Real faults, not stubs. A row the code cannot read (a state no version wrote)
    # is a bug: 500, with the cause in the log only.
    body = {"vm_name": "web1", "requested": {"vcpus": 1, "memory_mib": 512}}
    tid = client.post(f"{API}/transitions", json=body, headers=auth(svc)).json()["id"]
    with svc.store.engine.begin() as conn:
        conn.execute(text("UPDATE transitions SET state = 'bogus-state' WHERE id = :t"), {"t": tid})
    crashed = assert_shape(client.get(f"{API}/transitions/{tid}"), 500, None)
    assert "bogus" not in crashed["reason"], "the cause must not leak"
    # The database losing a table is the store's error (503), in the same shape.
    with svc.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE transitions"))
    assert_shape(client.get(f"{API}/transitions"), 503, None)


# -- item 13: no open redirect after sign-in ------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        "/%5Cevil.example/",
        "/\\evil.example/",
        "//evil.example/",
        "/%2Fevil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\t/evil.example/",
        "%2F%2Fevil.example",
        "evil.example",
        "",
    ],
)
def test_login_sends_only_to_same_origin_paths(client: TestClient, raw: str) -> None:
    from vmshadow.web.pages import safe_next

    assert safe_next(raw) == "/"
    page = client.get("/login", params={"next": raw})
    assert page.status_code == 200
    assert re.search(r'data-next="/"', page.text), "the page must carry the checked target"


@pytest.mark.parametrize("good", ["/", "/t/abc", "/new?kind=resize&vm=web1", "/t/a%20b"])
def test_login_keeps_a_same_origin_path(client: TestClient, good: str) -> None:
    from vmshadow.web.pages import safe_next

    assert safe_next(good) == good


def test_the_sign_in_script_uses_the_servers_target() -> None:
    """The script must not re-read ``next`` from the address bar (the hole was there)."""
    import vmshadow.web

    js = (Path(vmshadow.web.__file__).parent / "static" / "app.js").read_text()
    assert 'get("next")' not in js and "get('next')" not in js
    assert "dataset.next" in js


# -- item 11: DNS rebinding and reads off loopback -------------------------------------------
@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:8600", "127.0.0.1.attacker.example", ""]
)
def test_a_foreign_host_header_reads_nothing(client: TestClient, host: str) -> None:
    for path in (f"{API}/hosts", f"{API}/transitions", "/", f"{API}/transitions/x/stream"):
        body = assert_shape(client.get(path, headers={"Host": host}), 400, "Host")
        assert "allowed_hosts" in body["reason"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8600", "localhost:8600", "LOCALHOST", "[::1]:8600", "[::1]"]
)
def test_the_loopback_names_are_answered(client: TestClient, host: str) -> None:
    assert client.get(f"{API}/health", headers={"Host": host}).status_code == 200


def test_allowed_hosts_adds_names(tmp_path: Path) -> None:
    svc = build(
        make_settings(tmp_path, allowed_hosts=["vmshadow.example.org"]), with_controller=False
    )
    with TestClient(svc.app, base_url="http://vmshadow.example.org:8600") as c:
        assert c.get(f"{API}/health").status_code == 200
        assert_shape(c.get(f"{API}/health", headers={"Host": "other.example.org"}), 400, "Host")


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[tuple[TestClient, Service]]:
    """Bound to a routable address (TEST-NET-1: nothing is sent there; the Host names it)."""
    svc = build(make_settings(tmp_path, host="192.0.2.10"), with_controller=False)
    with TestClient(svc.app, base_url="http://192.0.2.10:8600") as c:
        yield c, svc


def test_off_loopback_reads_need_the_token(exposed: tuple[TestClient, Service]) -> None:
    c, svc = exposed
    for path in (
        f"{API}/hosts",
        f"{API}/transitions",
        f"{API}/health",
        "/openapi.json",
        "/ui/rows",
    ):
        assert_shape(c.get(path), 401, "Authorization")
        assert c.get(path, headers=auth(svc)).status_code == 200, path
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert_shape(c.get(f"{API}/hosts", headers=wrong), 401)
    # A page load goes to the sign-in page, which (with its script) needs no token.
    page = c.get("/t/abc?x=1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Ft%2Fabc%3Fx%3D1"
    assert c.get("/login").status_code == 200
    assert c.get("/static/app.js").status_code == 200


def test_the_sign_in_cookie_grants_reads_only(exposed: tuple[TestClient, Service]) -> None:
    c, svc = exposed
    assert c.get("/ui/auth-check", headers=auth(svc)).status_code == 204
    cookie = c.cookies.get("vmshadow_read")
    assert cookie and svc.token not in cookie, "the cookie must not carry the token"
    assert c.get(f"{API}/hosts").status_code == 200
    assert c.get("/", headers={"Accept": "text/html"}).status_code == 200
    # The cookie is no bearer token: a forged cross-site POST still fails.
    body = {"vm_name": "web1", "requested": {"vcpus": 1, "memory_mib": 512}}
    assert_shape(c.post(f"{API}/transitions", json=body), 401)
    c.get("/ui/sign-out")
    assert not c.cookies.get("vmshadow_read")
    assert_shape(c.get(f"{API}/hosts"), 401)


def test_a_bind_off_loopback_needs_tls_or_an_explicit_yes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from vmshadow.domain.errors import ConfigError
    from vmshadow.server import uvicorn_options

    with pytest.raises(ConfigError) as refused:
        uvicorn_options(make_settings(tmp_path, host="0.0.0.0"))
    assert refused.value.field == "api.tls_cert" and "allow_plaintext" in refused.value.reason
    with pytest.raises(ConfigError) as half:
        uvicorn_options(make_settings(tmp_path, host="0.0.0.0", tls_cert=str(tmp_path / "c")))
    assert half.value.field == "api.tls_key"

    caplog.set_level("WARNING")
    opts = uvicorn_options(make_settings(tmp_path, host="0.0.0.0", allow_plaintext=True))
    assert "ssl_certfile" not in opts
    assert "in clear" in caplog.text
    caplog.clear()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    opts = uvicorn_options(
        make_settings(tmp_path, host="0.0.0.0", tls_cert=str(cert), tls_key=str(key))
    )
    assert opts["ssl_certfile"] == str(cert) and opts["ssl_keyfile"] == str(key)
    assert "reachable from the network" in caplog.text
    caplog.clear()
    assert "ssl_certfile" not in uvicorn_options(make_settings(tmp_path))
    assert not caplog.text


# -- item 14: the token stays out of stdout ---------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.subprocess
def test_serve_prints_where_the_token_is_never_the_token(tmp_path: Path) -> None:
    vmshadow = Path(sys.executable).with_name("vmshadow")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VMSHADOW_")},
        "VMSHADOW_CONFIG": str(tmp_path / "none.toml"),
        "VMSHADOW_DATA_DIR": str(tmp_path / "data"),
        "VMSHADOW_LIBVIRT_URI": "test:///default",
        "VMSHADOW_API_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [str(vmshadow), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:  # up to the announcement's last line (or the exit)
            lines.append(raw.decode())
            if lines[-1].startswith("Web UI"):
                break
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=60)
    printed = "".join(lines) + rest.decode()
    token = (tmp_path / "data" / "api-token").read_text().strip()
    assert len(token) >= 32
    assert token not in printed
    assert str(tmp_path / "data" / "api-token") in printed
    assert "vmshadow token show --link" in printed

    shown = subprocess.run(
        [str(vmshadow), "token", "show", "--link"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"http://127.0.0.1:{port}/login#token={token}"
    bare = subprocess.run([str(vmshadow), "token", "show"], env=env, capture_output=True, text=True)
    assert bare.stdout.strip() == token
