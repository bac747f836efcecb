"""`vmshadow launch --yes` against the real service process with a real shadow:
the CLI finds the service and its token through the same settings, follows the
stream, accepts the recommendation and returns once the VM runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from service_helpers import cached_accelerator, service

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture
def accel(settings: Settings, hv: LibvirtHypervisor) -> str:
    # The verdict cached in the default data folder: the service's fresh folder
    # would otherwise pay for a KVM probe boot.
    return cached_accelerator(settings, hv).value


@pytest.fixture
def vm_name(hv: LibvirtHypervisor) -> Iterator[str]:
    name = f"e2e-cli-{uuid.uuid4().hex[:8]}"
    yield name
    if hv.state(name) is not None:
        hv.remove_full_vm(name)


def test_launch_yes_reaches_running(
    settings: Settings, hv: LibvirtHypervisor, accel: str, vm_name: str
) -> None:
    with service(settings, VMSHADOW_ACCELERATOR=accel) as run:
        cmd = [sys.executable, "-m", "vmshadow.cli", "launch", vm_name, "--profile", "smoke"]
        cmd += ["--cpus", "1", "--memory", "512M", "--yes", "--json"]
        env = {**run.env(), "COLUMNS": "160"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]
        doc = json.loads(proc.stdout)
        assert doc["state"] in ("running", "completed"), doc
        assert doc["decision"] == "prediction" and doc["final"] == doc["recommended"]
        assert "Launch with the recommendation" not in proc.stderr  # --yes asked nothing
        assert "recommended (x1.2)" in proc.stderr and f"VM {vm_name} started" in proc.stderr
        info = hv.full_vm_info(vm_name)
        assert info is not None and info["running"]
        assert (info["vcpus"], info["memory_mib"]) == (
            doc["final"]["vcpus"],
            doc["final"]["memory_mib"],
        )
        # A pre-booted VM is resumed without waiting for the shadow to be
        # destroyed (launch.preboot): the shadow goes right after, never stays.
        give_up = time.monotonic() + 60
        while [n for n, m in hv.list_shadows() if m.transition_id == doc["id"]]:
            assert time.monotonic() < give_up, "the shadow outlived the launch by 60 s"
            time.sleep(0.5)
