"""``vmshadow vm ls`` and ``vmshadow vm delete`` through the real API app on
loopback (tests/integration/cli_service.py), on libvirt's test driver."""

from __future__ import annotations

import json

import cli_service
import managed_vms as mv
import pytest
from cli_service import Service, cli, isolate
from managed_vms import S

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]  # qemu-img makes the disks
settings = pytest.fixture(cli_service.settings, name="settings")
svc = pytest.fixture(cli_service.svc, name="svc")
url = pytest.fixture(cli_service.url, name="url")


@pytest.fixture(autouse=True)
def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(settings, monkeypatch)


def test_ls_then_delete(url: str, svc: Service, settings: Settings, hv: LibvirtHypervisor) -> None:
    r = cli("vm", "ls", url=url)
    assert r.exit_code == 0 and r.stdout == "NAME\tSTATE\tSIZE\tHOST\tIMAGE\tADDRESSES\tSSH\n"
    assert r.stderr.strip() == "no VMs launched by vmshadow"
    tid = mv.launched(settings, svc.store, hv, "web1", state=S.RUNNING)
    mv.launched(settings, svc.store, hv, "db1", state=S.COMPLETED)
    r = cli("vm", "ls", url=url)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [
        "db1\trunning\t2/1024/300\tlocal\tbuiltin\t-\t-",
        "web1\trunning\t2/1024/300\tlocal\tbuiltin\t-\t-",
    ]
    doc = json.loads(cli("vm", "ls", "--json", url=url).stdout)
    assert [v["transition_state"] for v in doc["items"]] == ["completed", "running"]

    r = cli("vm", "delete", "test", "--yes", url=url)  # the test driver's own domain
    assert r.exit_code == 1
    assert r.stderr.startswith("error: 'test' is not a VM vmshadow launched"), r.stderr
    assert hv.is_running("test")

    r = cli("vm", "delete", "web1", url=url, input="n\n")
    assert r.exit_code == 1 and "web1" in mv.domain_names()
    r = cli("vm", "delete", "web1", url=url, input="y\n")
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert said.endswith(
        f"deleted VM web1 from host local: destroyed, undefined, its disks removed (folder "
        f"{settings.vms_dir / 'web1'}); transition {tid} ended first (it was running)"
    ), said
    assert "web1" not in mv.domain_names()
    assert S(svc.store.get(tid).state).terminal
    r = cli("vm", "delete", "web1", "--yes", url=url)
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: no VM named 'web1' that vmshadow launched"
