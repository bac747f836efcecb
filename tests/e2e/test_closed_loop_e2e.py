"""The closed loop, small: shadow -> recommendation -> full VM of that size
running the profile at full load -> it kept up, and nothing is left behind."""

from __future__ import annotations

import pytest
from service_helpers import cached_accelerator

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.shadow.fullload import run_full_load
from vmshadow.shadow.planner import plan
from vmshadow.workloads.profiles import load_profile

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


def test_recommended_vm_sustains_the_load(settings: Settings, hv: LibvirtHypervisor) -> None:
    fast = load_settings(
        {("controller", "phase_s"): 3}, config_path=settings.data_dir / "none.toml", environ={}
    )
    image = find_image(settings.images_dir)
    assert image is not None
    accel = cached_accelerator(settings, hv)
    doc = plan(fast, "web", 50)
    rec = doc["prediction"]["recommended"]
    alloc = Allocation(rec["vcpus"], rec["memory_mib"], rec.get("iops"))
    res = run_full_load(fast, hv, image, accel, load_profile("web"), 50, alloc, duration_s=6)
    print("closed loop:", res.as_dict())
    assert res.error is None
    # 50 requests/s of web: 20 % of a vCPU, 121 MiB of working set, 2.5 IOPS.
    assert res.asked.vcpus == pytest.approx(0.2)
    assert res.realized.vcpus == pytest.approx(0.2, abs=0.1)
    # What it ran plus what it queued for behind other host work is the load's ask.
    assert res.realized.vcpus + res.host_wait_vcpus == pytest.approx(0.2, abs=0.1)
    assert res.realized.memory_mib >= res.asked.memory_mib
    assert res.realized.memory_mib <= alloc.memory_mib
    assert res.sustained, res.ratios
    assert res.boot_s > 0 and res.run_s >= 3 * 6
    # Its full VM is gone, definition and folder (other VMs on the host are not ours).
    assert res.vm_name.startswith("vmshadow-fullload-")
    assert hv.state(res.vm_name) is None
    assert not (fast.vms_dir / res.vm_name).exists()
