"""A launch's guest options through the API on libvirt's test driver: checked
before anything is stored, each error naming its field; a store image's VM
gets them, the built-in image's refuses them; the view never shows user-data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmshadow.config import Settings, load_settings
from vmshadow.server import Service

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]
API = "/api/v1"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqQ probe@test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = load_settings(
        {("data_dir",): str(tmp_path), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )
    s.user_images_dir.mkdir()
    image = s.user_images_dir / "deb12"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    return s


def body(**kw: object) -> dict[str, object]:
    b: dict[str, object] = {
        "vm_name": "web1",
        "profile": "smoke",
        "image": "deb12",
        "requested": {"vcpus": 1, "memory_mib": 512},
    }
    b.update(kw)
    return b


def create(client: TestClient, svc: Service, **kw: object) -> tuple[int, dict[str, object]]:
    r = client.post(
        f"{API}/transitions", json=body(**kw), headers={"Authorization": f"Bearer {svc.token}"}
    )
    return r.status_code, r.json()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"image": "builtin", "ssh_keys": [KEY]}, "ssh_keys"),
        ({"image": "builtin", "network": "user"}, "network"),
        ({"ssh_keys": ["-----BEGIN OPENSSH PRIVATE KEY-----"]}, "ssh_keys.0"),
        ({"ssh_keys": [KEY + "\nssh-rsa AAAA second"]}, "ssh_keys.0"),
        ({"user": "root"}, "user"),
        ({"user": "Bad Name"}, "user"),
        ({"network": "nosuchnet"}, "network"),
        ({"network": "bridge:../x"}, "network"),
        ({"user_data": "#!/bin/sh\nrm -rf /\n"}, "user_data"),
        ({"user_data": "#cloud-config\n- a list\n"}, "user_data"),
    ],
)
def test_bad_guest_options_name_their_field_and_store_nothing(
    client: TestClient, svc: Service, kw: dict[str, object], field: str
) -> None:
    status, doc = create(client, svc, **kw)
    assert status == 422 and doc["field"] == field, doc
    assert svc.store.list_transitions() == []


def test_store_image_launch_keeps_its_options_and_hides_user_data(
    client: TestClient, svc: Service
) -> None:
    status, doc = create(
        client,
        svc,
        network="default",  # the test driver's own network, active
        user="probe",
        ssh_keys=[KEY],
        user_data="#cloud-config\nruncmd: [[touch, /secret-token-abc]]\n",
        disk_gib=8,
    )
    assert status == 201, doc
    assert doc["guest"] == {
        "network": "default",
        "user": "probe",
        "ssh_keys": 1,
        "user_data": True,
        "disk_gib": 8,
    }
    got = client.get(f"{API}/transitions/{doc['id']}").text
    assert "secret-token-abc" not in got and "AAAAC3Nza" not in got


def test_auto_network_is_the_active_default_network(client: TestClient, svc: Service) -> None:
    status, doc = create(client, svc)
    assert status == 201 and doc["guest"]["network"] == "default", doc  # type: ignore[index]
