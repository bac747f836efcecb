"""`vmshadow plan` with a real shadow: a ramp, an extrapolation, nothing left behind."""

from __future__ import annotations

import pytest

from vmshadow.config import Settings, load_settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.usecases.plan import plan

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


def test_plan_ramps_and_extrapolates(settings: Settings, hv: LibvirtHypervisor) -> None:
    fast = load_settings(
        {("controller", "phase_s"): 3}, config_path=settings.data_dir / "none.toml", environ={}
    )
    before = {n for n, _ in hv.list_shadows()}
    doc = plan(fast, "web", 400, connect=LibvirtHypervisor)
    p = doc["prediction"]
    assert p["method"] == "ramp-extrapolation"
    steps = p["detail"]["ramp"]
    assert len(steps) >= 2
    # More load costs more CPU on the shadow, and the need at 400 req/s is above
    # what the busiest sustained step measured.
    cpu = [s["measured"]["vcpus"] for s in steps]
    assert cpu[-1] > cpu[0]
    assert p["median"]["vcpus"] > max(
        s["measured"]["vcpus"] for s in steps if not s["cpu_saturated"]
    )
    assert p["recommended"]["vcpus"] >= 1 and p["recommended"]["memory_mib"] >= 512
    assert doc["timings"]["agent_ready_s"] > 0
    assert {n for n, _ in hv.list_shadows()} <= before
