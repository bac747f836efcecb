"""What a pre-booted VM can take live, and what its review warns of: within its
maxima, and never fewer vCPUs than it runs (QEMU cannot take one back: a
confirm at 1 vCPU of a VM pre-booted at 2 failed with "failed to find
appropriate hotpluggable vcpus" before this rule)."""

from __future__ import annotations

from vmshadow.controller.preboot import fits, restart_warning
from vmshadow.domain.allocation import Allocation
from vmshadow.hypervisor.support import LiveSize

BOOTED = LiveSize(vcpus=2, max_vcpus=4, memory_mib=512, max_memory_mib=2048, iops=None)
VIEW = {"state": "paused", "vcpus": 2, "memory_mib": 512, "max_vcpus": 4, "max_memory_mib": 2048}


def test_live_within_the_maxima_and_no_fewer_vcpus() -> None:
    assert fits(BOOTED, Allocation(2, 512))
    assert fits(BOOTED, Allocation(4, 2048))  # up to the maxima
    assert fits(BOOTED, Allocation(3, 256))  # memory may shrink: the balloon
    assert not fits(BOOTED, Allocation(1, 512))  # a vCPU cannot be taken back live
    assert not fits(BOOTED, Allocation(5, 512))
    assert not fits(BOOTED, Allocation(2, 4096))


def test_the_review_says_a_restart_is_needed_for_the_same_sizes() -> None:
    assert restart_warning(VIEW, Allocation(2, 512)) is None
    assert restart_warning(VIEW, Allocation(4, 2048)) is None
    fewer = restart_warning(VIEW, Allocation(1, 512))
    assert fewer is not None and fewer["severity"] == "needs-restart"
    assert fewer["resource"] == "vcpus" and "cannot be removed live" in fewer["message"]
    more = restart_warning(VIEW, Allocation(2, 4096))
    assert more is not None and more["resource"] == "memory_mib"
    assert restart_warning({**VIEW, "state": "off"}, Allocation(1, 512)) is None
    assert restart_warning(None, Allocation(1, 512)) is None
