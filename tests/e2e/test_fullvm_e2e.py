"""A built-in full VM under the real local QEMU: define, start, resize live
(vCPU hot-plug, balloon, IOPS cap), resize beyond its maxima (restart), remove.

The guest's own view comes from the agent's hello, which it sends on every
connection: ``cpus`` is the number of online CPUs and ``mem_total_kib`` the
guest's MemTotal, which the balloon moves.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest
from e2e_helpers import wait_for
from service_helpers import cached_accelerator

from vmshadow.agent.client import AgentClient
from vmshadow.agent.conversation import Hello
from vmshadow.agent.errors import ProtocolError
from vmshadow.config import Settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.vm import BuiltinImage, FullVmSpec, ResizeMode
from vmshadow.hypervisor.fullvm_resize import SHUTDOWN_GRACE_S
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


def hello(hv: LibvirtHypervisor, name: str) -> Hello | None:
    """A fresh hello from the agent, or None while it cannot be reached."""
    try:
        client = AgentClient(hv.open_agent_channel(name))
    except VmshadowError:
        return None
    try:
        return client.wait_hello(5)
    except (VmshadowError, ProtocolError, OSError):
        return None
    finally:
        client.close()


def guest_sees(
    hv: LibvirtHypervisor, name: str, cpus: int, mem_mib: tuple[int, int], timeout: float = 90
) -> Hello:
    """Wait for a hello with ``cpus`` online CPUs and a MemTotal within ``mem_mib``."""
    low, high = mem_mib

    def check() -> Hello | None:
        h = hello(hv, name)
        ok = h is not None and h.cpus == cpus and low * 1024 <= h.mem_total_kib <= high * 1024
        return h if ok else None

    found = wait_for(f"the guest to see {cpus} CPUs and {low}-{high} MiB", check, timeout)
    assert isinstance(found, Hello)
    return found


def host_view(hv: LibvirtHypervisor, name: str) -> tuple[object, ...]:
    info = hv.full_vm_info(name)
    assert info is not None and info["running"]
    return (info["vcpus"], info["max_vcpus"], info["memory_mib"])


def test_builtin_vm_resizes_live_then_with_a_restart(
    settings: Settings, hv: LibvirtHypervisor
) -> None:
    image = find_image(settings.images_dir)
    assert image is not None
    accel = cached_accelerator(settings, hv)
    name = f"e2e-fullvm-{uuid.uuid4().hex[:8]}"
    vm_dir = settings.vms_dir / name
    spec = FullVmSpec(
        name=name,
        transition_id=f"e2e-{name}",
        allocation=Allocation(1, 512),
        max_vcpus=2,
        max_memory_mib=768,
        accelerator=accel,
        image=BuiltinImage(image.kernel, image.initrd, image.base),
        vm_dir=vm_dir,
        created_at="2026-11-28T00:00:00Z",
    )
    took: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        hv.define_full_vm(spec)
        assert hv.start_full_vm(name) is True
        # The balloon holds back 256 of the 768 MiB (the kernel keeps some too).
        first = guest_sees(hv, name, cpus=1, mem_mib=(400, 512))
        took["boot_to_hello"] = time.monotonic() - t0

        # Within the maxima: hot-plug a vCPU and let the balloon go to 640 MiB.
        grown = Allocation(2, 640)
        assert hv.resize_mode(name, grown) is ResizeMode.LIVE
        t0 = time.monotonic()
        assert hv.apply_resize(name, grown) is ResizeMode.LIVE
        # The balloon gives back memory in steps: wait for (nearly) all 128 MiB.
        base_mib = first.mem_total_kib // 1024
        seen = guest_sees(hv, name, cpus=2, mem_mib=(base_mib + 120, base_mib + 136), timeout=30)
        took["live_resize_seen"] = time.monotonic() - t0
        # libvirt's figure follows QEMU's balloon events, which may trail the guest.
        wait_for("libvirt to report 640 MiB", lambda: host_view(hv, name) == (2, 2, 640), 30)
        assert hv.counters(name) is not None
        # The IOPS cap is live as well.
        assert hv.apply_resize(name, Allocation(2, 640, 400)) is ResizeMode.LIVE
        info = hv.full_vm_info(name)
        assert info is not None and info["iops"] == 400

        # Beyond the maxima: the definition grows and the VM restarts with it.
        bigger = Allocation(2, 1024, 400)
        assert hv.resize_mode(name, bigger) is ResizeMode.RESTART
        t0 = time.monotonic()
        assert hv.apply_resize(name, bigger) is ResizeMode.RESTART
        took["restart_call"] = time.monotonic() - t0
        # The agent powered the guest off: no wait for the grace, no pulled plug.
        assert took["restart_call"] < SHUTDOWN_GRACE_S, took
        guest_sees(hv, name, cpus=2, mem_mib=(seen.mem_total_kib // 1024 + 300, 1024))
        took["restart_to_hello"] = time.monotonic() - t0
        info = hv.full_vm_info(name)
        assert info is not None and info["running"]
        assert (info["vcpus"], info["memory_mib"], info["max_memory_mib"]) == (2, 1024, 1024)
        assert info["iops"] == 400

        t0 = time.monotonic()
        assert hv.remove_full_vm(name) is True
        took["remove"] = time.monotonic() - t0
        assert hv.state(name) is None
        assert not vm_dir.exists()
        assert name not in [n for n, _ in hv.list_managed_vms()]
    finally:
        print("full VM timings (s):", {k: round(v, 2) for k, v in took.items()})
        if hv.state(name) is not None:
            hv.remove_full_vm(name)
        shutil.rmtree(vm_dir, ignore_errors=True)
    assert not Path(vm_dir).exists()
