"""The closed loop, small: shadow -> recommendation -> full VM of that size
running the profile at full load -> it kept up, and nothing is left behind."""

from __future__ import annotations

import pytest
from service_helpers import cached_accelerator

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.ramp import cpu_cost
from vmshadow.domain.samples import Source
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.usecases.fullload import run_full_load
from vmshadow.usecases.plan import plan
from vmshadow.workloads.profiles import load_profile

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


def test_recommended_vm_sustains_the_load(settings: Settings, hv: LibvirtHypervisor) -> None:
    fast = load_settings(
        {("controller", "phase_s"): 3}, config_path=settings.data_dir / "none.toml", environ={}
    )
    image = find_image(settings.images_dir)
    assert image is not None
    accel = cached_accelerator(settings, hv)
    doc = plan(fast, "web", 50, connect=LibvirtHypervisor)
    rec = doc["prediction"]["recommended"]
    alloc = Allocation(rec["vcpus"], rec["memory_mib"], rec.get("iops"))
    res = run_full_load(fast, hv, image, accel, load_profile("web"), 50, alloc, duration_s=6)
    print("closed loop:", res.as_dict())
    assert res.error is None
    # 50 requests/s of web: 20 % of a vCPU, 121 MiB of working set, 2.5 IOPS.
    assert res.asked.vcpus == pytest.approx(0.2)
    # What the host measured of the CPU phase is what the guest saw of itself.
    # (Not the 0.2 asked: stress-ng's --cpu-load only approximates its duty
    # cycle under TCG; the same test has measured 0.027, 0.18, 0.22 and 0.27.)
    assert any(
        (p.phase_id or "").endswith("-cpu") and p.source is Source.GUEST for p in res.points
    ), "no guest samples in the CPU phase"
    # The guest's own view, by the same rule as the host figure (first sample skipped).
    guest = cpu_cost(res.points, Source.GUEST)
    print(f"CPU phase: host {res.realized.vcpus:.3f}, guest {guest:.3f} busy vCPUs")
    assert 0 < res.realized.vcpus <= alloc.vcpus
    assert res.realized.vcpus == pytest.approx(guest, abs=0.1)
    assert res.realized.vcpus + res.host_wait_vcpus <= alloc.vcpus
    assert res.realized.memory_mib >= res.asked.memory_mib
    assert res.realized.memory_mib <= alloc.memory_mib
    assert res.sustained, res.ratios
    assert res.boot_s > 0 and res.run_s >= 3 * 6
    # Its full VM is gone, definition and folder (other VMs on the host are not ours).
    assert res.vm_name.startswith("vmshadow-fullload-")
    assert hv.state(res.vm_name) is None
    assert not (fast.vms_dir / res.vm_name).exists()
