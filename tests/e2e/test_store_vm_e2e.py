"""A new user's path with their own image, on real QEMU, through the CLI and the
real service: ``image add`` the test cloud image, ``launch --image ... --ssh-key
--user probe --network user --yes``, log in over SSH at the loopback endpoint
``vm ls --json`` gives, see the confirmed size inside, resize it live, then
``vm delete`` and ``image rm``: no domain, volume, seed or file is left.

The VM uses QEMU's user networking with ``restrict=on`` and SSH forwarded from
127.0.0.1 only: no traffic leaves this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import ServiceRun, cached_accelerator, service

from vmshadow.config import Settings, load_settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.testcloud import build_test_cloud_image

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]

SSH_READY_S = 420  # the guest boots under TCG on a shared 2-core host


@pytest.fixture
def names(hv: LibvirtHypervisor) -> Iterator[dict[str, str]]:
    uid = uuid.uuid4().hex[:8]
    got = {
        "vm": f"e2e-store-{uid}",
        "image": f"e2e-deb12-{uid}",
    }
    yield got
    # Whatever the test did, nothing of it stays in libvirt.
    if hv.state(got["vm"]) is not None:
        hv.remove_full_vm(got["vm"])
    for pool in (got["images_pool"], got["disks_pool"]):
        try:
            p = hv._conn.storagePoolLookupByName(pool)
        except Exception:
            continue
        if p.isActive():
            p.destroy()
        p.undefine()


def cli(run: ServiceRun, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**run.env(), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "vmshadow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ssh(port: int, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", "probe@127.0.0.1", command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def wait_ssh(port: int, key: Path) -> str:
    deadline = time.monotonic() + SSH_READY_S
    last = None
    while time.monotonic() < deadline:
        last = ssh(port, key, "cloud-init status --wait >/dev/null; nproc; free -m")
        if last.returncode == 0:
            return last.stdout
        time.sleep(5)
    raise AssertionError(f"no SSH login within {SSH_READY_S} s: {last and last.stderr[-500:]}")


def vm_entry(run: ServiceRun, name: str) -> dict[str, Any]:
    proc = cli(run, "vm", "ls", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    items = doc["items"] if isinstance(doc, dict) else doc
    found = [v for v in items if v["name"] == name]
    assert len(found) == 1, doc
    return dict(found[0])


def test_launch_from_own_image_log_in_resize_delete(
    settings: Settings, hv: LibvirtHypervisor, names: dict[str, str]
) -> None:
    image = build_test_cloud_image(settings.data_dir).path
    accel = cached_accelerator(settings, hv).value
    with service(settings, VMSHADOW_ACCELERATOR=accel) as run:
        # The service's data dir is its own, and so are its pools (named after it).
        mine = load_settings(config_path=Path("/nonexistent"), environ=run.env())
        names["images_pool"], names["disks_pool"] = mine.images_pool, mine.disks_pool
        key = run.data_dir / "id_e2e"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        added = cli(run, "image", "add", names["image"], str(image), "--os-variant", "debian12")
        assert added.returncode == 0, added.stderr
        listed = cli(run, "image", "ls", "--json")
        assert names["image"] in listed.stdout, listed.stderr
        vols = subprocess.run(
            ["virsh", "-c", "qemu:///system", "vol-list", names["images_pool"]],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert names["image"] in vols.stdout

        launch = cli(
            run, "launch", names["vm"], "--image", names["image"], "--profile", "smoke",
            "--cpus", "1", "--memory", "1G", "--ssh-key", f"{key}.pub", "--user", "probe",
            "--network", "user", "--yes", "--json", timeout=900,
        )  # fmt: skip
        assert launch.returncode == 0, launch.stderr[-3000:]
        doc = json.loads(launch.stdout)
        assert doc["state"] in ("running", "completed"), doc
        final = doc["final"]
        # The shadow ran the image's own OS and measured it at idle; the card says so.
        pred = doc["prediction"]
        assert pred["shadow_os"]["used"] == "target", pred["shadow_os"]
        assert 20 < pred["os_idle"]["memory_mib"] < 400, pred["os_idle"]
        assert "Your OS at idle" in launch.stderr

        entry = vm_entry(run, names["vm"])
        assert entry["network"] == "user" and entry["image"] == names["image"]
        port = entry["ssh_port"]
        assert isinstance(port, int) and entry["ssh"] == f"ssh -p {port} probe@127.0.0.1"
        nproc, *free = wait_ssh(port, key).splitlines()
        assert int(nproc) == final["vcpus"]
        total_mib = int(next(ln for ln in free if ln.startswith("Mem:")).split()[1])
        # The guest's total is its memory less what the kernel keeps for itself.
        assert 0.75 * final["memory_mib"] <= total_mib <= final["memory_mib"]
        # The guest became ready and said so: after the agent and cloud-init.
        ready = _wait(lambda: vm_entry(run, names["vm"]).get("guest_ready") is True, 120)
        assert ready, vm_entry(run, names["vm"])

        # One more vCPU, live: hot-plugged and brought online by the guest agent.
        _resize_live(run, names["vm"], final, doc["id"])
        assert _wait(lambda: ssh(port, key, "nproc").stdout.strip() == "2", 60)

        in_use = cli(run, "image", "rm", names["image"], "--yes")
        assert in_use.returncode != 0 and names["vm"] in (in_use.stderr + in_use.stdout)

        gone = cli(run, "vm", "delete", names["vm"], "--yes")
        assert gone.returncode == 0, gone.stderr
        assert hv.state(names["vm"]) is None
        assert hv.pool_volumes(names["disks_pool"]) == {}
        assert not (run.data_dir / "vms" / names["vm"]).exists()
        removed = cli(run, "image", "rm", names["image"], "--yes")
        assert removed.returncode == 0, removed.stderr
        assert hv.pool_volumes(names["images_pool"]) == {}


def _resize_live(run: ServiceRun, vm: str, final: dict[str, Any], launched: str) -> None:
    """A resize transition through the API, overriding the recommendation to
    2 vCPUs (the smoke profile would keep 1): shadow, decision, applied live."""
    # The launch's observation lasts until the guest is ready: a resize waits
    # for it to end (one transition per VM at a time), and it said so.
    done = run.wait_state(launched, "completed", timeout=180)
    said = [e["message"] for e in done["events"]]
    assert any(m.startswith("guest ready") and "cloud-init done" in m for m in said), said
    body = {"kind": "resize", "vm_name": vm, "profile": "smoke"}
    r = run.call("POST", "/transitions", json=body)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    run.wait_state(tid, "predicted", timeout=600)
    size = {"vcpus": 2, "memory_mib": final["memory_mib"], "acknowledge_risk": True}
    r = run.call("POST", f"/transitions/{tid}/override", json=size)
    assert r.status_code in (200, 201), r.text
    t = run.wait_state(tid, "running", "completed", timeout=120)
    assert t["resize_mode"] == "live", t


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(2)
    return False
