"""``vmshadow show ID --emit FORMAT`` against the real API app on loopback
(tests/integration/cli_service.py, with its stand-in for the controller)."""

from __future__ import annotations

import cli_service
import httpx
import pytest
from cli_service import REC, Service, StandIn, api_get, cli, isolate

from vmshadow.config import Settings
from vmshadow.emit import FORMATS

pytestmark = pytest.mark.libvirt
settings = pytest.fixture(cli_service.settings, name="settings")
svc = pytest.fixture(cli_service.svc, name="svc")
url = pytest.fixture(cli_service.url, name="url")
stand_in = pytest.fixture(cli_service.stand_in, name="stand_in")


@pytest.fixture(autouse=True)
def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(settings, monkeypatch)


SIZE = {"vcpus": 4, "memory_mib": 2048}


def create(url: str, svc: Service) -> str:
    return str(
        httpx.post(
            f"{url}/api/v1/transitions",
            json={
                "vm_name": "db1",
                "profile": "smoke",
                "requested": {"vcpus": 4, "memory_mib": 2048},
            },
            headers={"Authorization": f"Bearer {svc.token}"},
        ).json()["id"]
    )


def test_show_emit_prints_what_the_api_gives(url: str, svc: Service, stand_in: StandIn) -> None:
    tid = create(url, svc)
    for _ in range(200):
        if api_get(url, f"/transitions/{tid}")["state"] == "predicted":  # type: ignore[index]
            break
        stand_in.stop.wait(0.05)
    for fmt in FORMATS:
        r = cli("show", tid, "--emit", fmt, url=url)
        assert r.exit_code == 0, r.stderr
        text = httpx.get(f"{url}/api/v1/transitions/{tid}/recommendation/{fmt}").text
        assert r.stdout == text and str(REC.memory_mib) in text


def test_a_bad_format_is_bad_usage_before_any_request() -> None:
    r = cli("show", "t1", "--emit", "ansible", url="http://127.0.0.1:9")
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error: --emit: no format 'ansible'; one of: virt-install")


def test_before_a_prediction_it_says_so(url: str, svc: Service) -> None:
    r = cli("show", create(url, svc), "--emit", "virsh", url=url)
    assert r.exit_code == 1 and "no recommendation yet" in r.stderr
