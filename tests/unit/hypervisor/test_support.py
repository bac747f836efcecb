"""The capability table and the live-or-restart decision, as plain data."""

import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.hypervisor.support import CAPABILITIES, LiveSize, needs_restart, support_for

QEMU = support_for("QEMU", 7_002_022)  # as libvirt's getType()/getVersion() say it
NOW = LiveSize(vcpus=2, max_vcpus=4, memory_mib=1024, max_memory_mib=2048, iops=300)


@pytest.mark.parametrize(
    ("target", "live"),
    [
        (Allocation(4, 2048, 300), True),  # hot-plug and balloon up to the maxima
        (Allocation(2, 512, 300), True),  # the balloon also shrinks
        (Allocation(2, 1024, None), True),  # lifting or changing the cap is live
        (Allocation(3, 1536, 900), True),
        (Allocation(5, 1024, 300), False),  # above the vCPU maximum
        (Allocation(2, 2304, 300), False),  # above the memory maximum
        (Allocation(1, 1024, 300), False),  # vCPU unplug times out under QEMU
    ],
)
def test_qemu_decisions(target: Allocation, live: bool) -> None:
    assert (needs_restart(NOW, target, QEMU) is None) is live


def test_the_reason_names_the_limit() -> None:
    why = needs_restart(NOW, Allocation(2, 4096, 300), QEMU)
    assert why == "4096 MiB is above the running maximum of 2048 MiB"


def test_test_driver_cannot_change_iops_live_but_can_unplug() -> None:
    test = support_for("TEST", 2)
    assert needs_restart(NOW, Allocation(2, 1024, 100), test) is not None
    assert needs_restart(NOW, Allocation(1, 1024, 300), test) is None


def test_old_and_unknown_hypervisors_get_nothing_live() -> None:
    old = support_for("QEMU", 2_006_000)
    assert not old("vcpu_hotplug") and old("balloon_resize")
    other = support_for("LXC", 5_000_000)
    assert not any(other(name) for name in CAPABILITIES)
    assert needs_restart(NOW, Allocation(3, 1024, 300), other) is not None


def test_every_capability_says_why() -> None:
    assert all(len(c.why) > 40 for c in CAPABILITIES.values())
