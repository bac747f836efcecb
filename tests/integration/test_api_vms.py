"""``GET /api/v1/vms``, ``GET /api/v1/vms/{name}``, ``DELETE /api/v1/vms/{name}``
and the web UI's ``/vms`` page, on libvirt's test driver without a controller."""

from __future__ import annotations

from pathlib import Path

import managed_vms as mv
import pytest
from fastapi.testclient import TestClient
from managed_vms import S

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.server import Service, build

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]  # qemu-img makes the disks
API = "/api/v1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return mv.settings(tmp_path)


def auth(svc: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token}"}


def test_list_show_delete(
    client: TestClient, svc: Service, settings: Settings, hv: LibvirtHypervisor
) -> None:
    tid = mv.launched(settings, svc.store, hv, "web1", state=S.COMPLETED)
    r = client.get(f"{API}/vms")
    assert r.status_code == 200
    doc = r.json()
    assert doc["errors"] == [] and [v["name"] for v in doc["items"]] == ["web1"]
    vm = doc["items"][0]
    assert (vm["host"], vm["state"], vm["vcpus"], vm["memory_mib"], vm["iops"]) == (
        "local",
        "running",
        2,
        1024,
        300,
    )
    assert (vm["transition_id"], vm["transition_state"], vm["profile"]) == (
        tid,
        "completed",
        "smoke",
    )
    assert {"image", "addresses", "ssh", "ssh_port", "network"} <= vm.keys()
    assert client.get(f"{API}/vms/web1").json() == vm

    r = client.delete(f"{API}/vms/web1")  # no token
    assert r.status_code == 401 and "web1" in mv.domain_names()
    r = client.delete(f"{API}/vms/web1", headers=auth(svc))
    assert r.status_code == 204 and r.content == b""
    assert "web1" not in mv.domain_names()
    assert not (settings.vms_dir / "web1").exists()
    r = client.get(f"{API}/vms/web1")
    assert r.status_code == 404
    assert r.json() == {
        "error": "no VM named 'web1' that vmshadow launched",
        "field": None,
        "reason": "no VM named 'web1' that vmshadow launched",
    }
    assert client.delete(f"{API}/vms/web1", headers=auth(svc)).status_code == 404
    assert client.get(f"{API}/vms").json() == {"items": [], "errors": []}


def test_delete_ends_a_running_transition(
    client: TestClient, svc: Service, settings: Settings, hv: LibvirtHypervisor
) -> None:
    tid = mv.launched(settings, svc.store, hv, "web1", state=S.RUNNING)
    assert client.get(f"{API}/vms/web1").json()["transition_state"] == "running"
    assert client.delete(f"{API}/vms/web1", headers=auth(svc)).status_code == 204
    t = client.get(f"{API}/transitions/{tid}").json()
    # Ended (how cancel ends a running one, "cancelled" or "completed", is the service's).
    assert t["terminal"] and t["state"] in ("cancelled", "completed")
    assert t["events"][-1]["message"] == "VM web1 deleted from host local on request"
    assert "web1" not in mv.domain_names()


def test_a_domain_vmshadow_did_not_make_is_refused(
    client: TestClient, svc: Service, hv: LibvirtHypervisor
) -> None:
    for r in (
        client.get(f"{API}/vms/test"),
        client.delete(f"{API}/vms/test", headers=auth(svc)),
    ):
        assert r.status_code == 404
        body = r.json()
        assert set(body) == {"error", "field", "reason"}
        assert body["error"].startswith("'test' is not a VM vmshadow launched")
    assert hv.is_running("test")  # the test driver's own domain, untouched
    assert client.get(f"{API}/vms").json()["items"] == []


def test_an_unreachable_host_is_listed_under_errors(tmp_path: Path, hv: LibvirtHypervisor) -> None:
    settings = mv.settings(tmp_path, local="test:///default", gone="test:///nonexistent/h.xml")
    svc = build(settings, with_controller=False)
    with TestClient(svc.app, base_url="http://127.0.0.1") as client:
        mv.launched(settings, svc.store, hv, "web1")
        doc = client.get(f"{API}/vms").json()
        assert [v["name"] for v in doc["items"]] == ["web1"]
        assert [(e["host"], e["vm"]) for e in doc["errors"]] == [("gone", None)]
        page = client.get("/vms").text
        assert "host gone" in page and "web1" in page


def test_the_vms_page(
    client: TestClient,
    svc: Service,
    settings: Settings,
    hv: LibvirtHypervisor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = client.get("/vms")
    assert page.status_code == 200 and "No VMs launched by vmshadow" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert '<a href="/vms">VMs</a>' in client.get("/").text  # in the nav of every page
    tid = mv.launched(settings, svc.store, hv, "web1", state=S.RUNNING)
    real = LibvirtHypervisor.full_vm_info

    def hostile(self: LibvirtHypervisor, name: str) -> dict[str, object] | None:
        # What the guest agent reports is the guest's to choose: text, never markup.
        info = real(self, name)
        extra = {"addresses": ["<img src=x onerror=alert(1)>"], "ssh_port": 2222}
        return None if info is None else {**info, **extra}

    monkeypatch.setattr(LibvirtHypervisor, "full_vm_info", hostile)
    html = client.get("/vms").text
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "ssh -p 2222 &lt;user&gt;@127.0.0.1" in html
    assert 'data-delete="web1"' in html and f"/t/{tid}" in html
    assert f"Its transition {tid} (running) is ended first." in html
    assert '<script src="/static/vms.js" defer></script>' in html
    assert client.get("/static/vms.js").status_code == 200
