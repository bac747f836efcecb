"""``/api/v1/images`` on libvirt's test driver: upload (PUT), list, show, remove,
and every refusal leaving the store as it was (no image, no partial file)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from test_image_store_pool import drop_pool, managed_vm_xml

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.server import Service

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
API = "/api/v1"
OCTETS = {"content-type": "application/octet-stream"}
MAX_BODY = 2048


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("libvirt_uri",): "test:///default",
            ("api", "max_body_bytes"): MAX_BODY,
            # The test driver's pools are shared in this process: a name of its own.
            ("vm", "images_pool"): f"apit-{uuid.uuid4().hex[:8]}",
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )
    yield settings
    with LibvirtHypervisor("test:///default") as hv:
        drop_pool(hv, settings.images_pool)


@pytest.fixture
def qcow2(tmp_path: Path) -> bytes:
    path = tmp_path / "src.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path.read_bytes()


def auth(svc: Service, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token}", **more}


def store_files(settings: Settings) -> list[str]:
    d = settings.user_images_dir
    return sorted(os.listdir(d)) if d.exists() else []


def put(client: TestClient, svc: Service, name: str, body: bytes, **params: str) -> Any:
    return client.put(
        f"{API}/images/{name}", content=body, params=params, headers=auth(svc, **OCTETS)
    )


def test_upload_list_show_and_remove(
    client: TestClient, svc: Service, settings: Settings, qcow2: bytes
) -> None:
    assert len(qcow2) > MAX_BODY  # an image is held to its own limit, not api.max_body_bytes
    r = put(client, svc, "deb12", qcow2, os_variant="debian12")
    assert r.status_code == 201, r.text
    doc = r.json()
    assert r.headers["location"] == f"{API}/images/deb12"
    assert (doc["name"], doc["format"], doc["virtual_size"]) == ("deb12", "qcow2", 64 * 2**20)
    assert (doc["default_user"], doc["file_size"], doc["recorded"]) == ("debian", len(qcow2), True)
    assert store_files(settings) == ["deb12"]
    assert (settings.image_records_dir / "deb12.json").stat().st_mode & 0o777 == 0o600

    listed = client.get(f"{API}/images").json()
    assert [i["name"] for i in listed] == ["deb12"] and listed[0]["in_use_by"] == []
    assert client.get(f"{API}/images/deb12").json()["sha256"] == doc["sha256"]
    assert client.get(f"{API}/images/nope").status_code == 404

    r = client.delete(f"{API}/images/deb12", headers=auth(svc))
    assert r.status_code == 200, r.text
    assert store_files(settings) == [] and not (settings.image_records_dir / "deb12.json").exists()
    assert client.get(f"{API}/images/deb12").status_code == 404
    assert client.delete(f"{API}/images/deb12", headers=auth(svc)).status_code == 404


def test_the_shadow_images_moved_and_the_form_offers_store_images(
    client: TestClient, svc: Service, qcow2: bytes
) -> None:
    assert client.get(f"{API}/shadow-images").status_code == 200
    assert put(client, svc, "ubuntu24", qcow2).status_code == 201
    page = client.get("/new").text
    assert 'list="image-names"' in page and '<option value="ubuntu24">' in page


def test_an_upload_needs_the_token(client: TestClient, settings: Settings, qcow2: bytes) -> None:
    r = client.put(f"{API}/images/deb", content=qcow2, headers=OCTETS)
    assert r.status_code == 401
    assert store_files(settings) == []


@pytest.mark.parametrize("name", ["builtin", ".hidden", "a%20b", "..%2Fx"])
def test_a_name_that_is_not_a_plain_word_is_refused(
    client: TestClient, svc: Service, settings: Settings, qcow2: bytes, name: str
) -> None:
    r = put(client, svc, name, qcow2)
    assert r.status_code in (404, 413, 422), r.text  # ..%2Fx is not this route: 413
    if r.status_code == 422:
        assert r.json()["field"] == "name"
    assert store_files(settings) == []


def test_a_backing_file_or_vmdk_is_refused_and_nothing_is_left(
    client: TestClient, svc: Service, settings: Settings, tmp_path: Path
) -> None:
    over, vmdk = tmp_path / "over.qcow2", tmp_path / "x.vmdk"
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(over)]
    subprocess.run([*cmd, "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "1M"], check=True)
    for name, path, reason in (("over", over, "backing-filename"), ("v", vmdk, "is vmdk")):
        r = put(client, svc, name, path.read_bytes())
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "body" and reason in r.json()["reason"]
        assert store_files(settings) == []


def test_an_existing_name_is_refused_and_kept(
    client: TestClient, svc: Service, settings: Settings, qcow2: bytes
) -> None:
    assert put(client, svc, "deb", qcow2).status_code == 201
    before = (settings.user_images_dir / "deb").read_bytes()
    r = put(client, svc, "deb", b"\0" * 4096)
    assert r.status_code == 409 and "already in the store" in r.json()["reason"]
    assert r.json()["field"] == "name"
    assert (settings.user_images_dir / "deb").read_bytes() == before
    assert store_files(settings) == ["deb"]


def test_only_an_image_body_gets_the_large_limit(
    client: TestClient, svc: Service, settings: Settings, qcow2: bytes
) -> None:
    r = client.put(f"{API}/images/deb", content=qcow2, headers=auth(svc))  # no content type
    assert r.status_code == 413
    r = client.put(
        f"{API}/images/deb", content=b"{}", headers=auth(svc, **{"content-type": "text/plain"})
    )
    assert r.status_code == 415 and r.json()["field"] == "Content-Type"
    assert store_files(settings) == []


def test_a_body_shorter_than_its_length_leaves_no_partial_file(
    client: TestClient, svc: Service, settings: Settings, qcow2: bytes
) -> None:
    headers = auth(svc, **OCTETS, **{"content-length": str(len(qcow2) + 1000)})
    r = client.put(f"{API}/images/deb", content=qcow2, headers=headers)
    assert r.status_code == 422 and "ended after" in r.json()["reason"]
    assert store_files(settings) == []


def test_a_client_that_goes_away_mid_upload_leaves_no_partial_file(
    svc: Service, settings: Settings, qcow2: bytes
) -> None:
    """Straight through ASGI, as uvicorn delivers it: part of the body, then
    ``http.disconnect``. The partial file exists while the body arrives."""
    seen_partial: list[list[str]] = []
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": qcow2[:50_000], "more_body": True},
        {"type": "http.request", "body": qcow2[50_000:60_000], "more_body": True},
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        seen_partial.append(store_files(settings))
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {svc.token}".encode()),
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(qcow2)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": f"{API}/images/deb",
        "raw_path": f"{API}/images/deb".encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8600),
    }
    anyio.run(svc.app, scope, receive, send)
    assert seen_partial and seen_partial[0][0].startswith(".deb.partial-")
    assert store_files(settings) == []
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400


def test_remove_is_refused_while_a_managed_vm_or_a_transition_uses_it(
    client: TestClient, svc: Service, settings: Settings, qcow2: bytes, tmp_path: Path
) -> None:
    assert put(client, svc, "deb", qcow2).status_code == 201
    image = (settings.user_images_dir / "deb").resolve()
    with LibvirtHypervisor("test:///default") as hv:
        xml = managed_vm_xml("apit-web1", tmp_path / "root.qcow2", [(image, "qcow2")])
        dom = hv._conn.defineXML(xml)
        try:
            r = client.delete(f"{API}/images/deb", headers=auth(svc))
            assert r.status_code == 409, r.text
            body = r.json()
            assert set(body) >= {"error", "field", "reason"} and body["field"] == "name"
            assert body["in_use_by"] == ["apit-web1"] and "VM apit-web1" in body["error"]
            assert client.get(f"{API}/images/deb").json()["in_use_by"] == ["apit-web1"]
        finally:
            dom.undefine()
    row = svc.store.create_transition(
        kind=TransitionKind.LAUNCH,
        vm_name="web2",
        profile="smoke",
        requested=Allocation(1, 512),
        image="deb",
    )
    r = client.delete(f"{API}/images/deb", headers=auth(svc))
    assert r.status_code == 409 and r.json()["field"] == "name"
    assert r.json()["transitions"] == [f"{row.id} (launch of web2, requested)"]
    assert store_files(settings) == ["deb"]
    assert json.loads((settings.image_records_dir / "deb.json").read_text())["name"] == "deb"
