"""What libvirt can change on a running VM here, in one table.

In the manner of virtinst's ``support.py``: each capability names the
drivers (and the oldest hypervisor version) where it works, and why it is
there or not, so no ``if driver == ...`` is scattered through the adapter.
``needs_restart`` then decides, from the table alone, whether a new
allocation can reach a running VM live. No libvirt import: the decisions are
tested as plain data.

    >>> can = support_for("qemu", 7_002_000)
    >>> needs_restart(LiveSize(1, 2, 512, 768, None), Allocation(2, 640), can) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vmshadow.domain.allocation import Allocation


@dataclass(frozen=True)
class Capability:
    """One thing a driver can do, from a hypervisor version on (absent: never)."""

    min_version: Mapping[str, int]  # lowercase libvirt driver type -> hypervisor version
    why: str

    def __call__(self, driver: str, version: int) -> bool:
        need = self.min_version.get(driver)
        return need is not None and version >= need


CAPABILITIES: dict[str, Capability] = {
    "vcpu_hotplug": Capability(
        {"qemu": 2_007_000, "test": 0},
        "setVcpusFlags(LIVE) adds vCPUs up to the domain's maximum (QEMU's "
        "query-hotpluggable-cpus, 2.7+). Measured on QEMU 7.2 TCG, machine pc: "
        "the call returns in 0.04 s and the built-in guest sees the CPU within "
        "about a second, once its init has onlined it (there is no udev there).",
    ),
    "vcpu_unplug": Capability(
        {"test": 0},
        "Measured on QEMU 7.2 TCG, machine pc: libvirt gives up after 5 s "
        "('vcpu unplug request timed out') while the guest has offlined the CPU "
        "but QEMU still has it. Removing vCPUs therefore takes a restart.",
    ),
    "balloon_resize": Capability(
        {"qemu": 0, "test": 0},
        "setMemoryFlags(LIVE) moves the virtio balloon anywhere up to <memory>; "
        "measured: the built-in guest's MemTotal follows within a second.",
    ),
    "live_iotune": Capability(
        {"qemu": 1_001_000},
        "setBlockIoTune(LIVE) throttles a running disk. The test driver refuses "
        "any total_iops_sec ('cannot be set higher than total_iops_sec_max').",
    ),
    "undefine_nvram_and_checkpoints": Capability(
        {"qemu": 0},
        "VIR_DOMAIN_UNDEFINE_NVRAM and _CHECKPOINTS_METADATA are harmless for "
        "BIOS domains under QEMU and leave nothing behind; the test driver "
        "refuses both flags as unsupported.",
    ),
    "free_memory_figure": Capability(
        {"qemu": 0},
        "getFreeMemory / getMemoryStats measure the host. The test driver's "
        "figure is a constant (3 MiB for test:///default, 0 for a host read "
        "from an XML file), so placement there goes by bookings alone.",
    ),
    "affect_live_and_config_at_once": Capability(
        {},
        "Several calls refuse LIVE|CONFIG in one go (setBlockIoTune under QEMU, "
        "setMemoryFlags under the test driver): always make two calls.",
    ),
}

Can = Callable[[str], bool]


def support_for(driver: str, version: int) -> Can:
    """The capability check of one connection: ``can("vcpu_hotplug")``."""
    key = driver.lower()

    def can(name: str) -> bool:
        return CAPABILITIES[name](key, version)

    return can


@dataclass(frozen=True)
class LiveSize:
    """A VM's size and its maxima: live for a running VM, else as defined."""

    vcpus: int
    max_vcpus: int
    memory_mib: int
    max_memory_mib: int
    iops: int | None


def needs_restart(now: LiveSize, target: Allocation, can: Can) -> str | None:
    """Why ``target`` cannot be applied to the running VM live; None if it can."""
    if target.vcpus > now.max_vcpus:
        return f"{target.vcpus} vCPUs is above the running maximum of {now.max_vcpus}"
    if target.vcpus > now.vcpus and not can("vcpu_hotplug"):
        return "this hypervisor cannot add vCPUs to a running VM"
    if target.vcpus < now.vcpus and not can("vcpu_unplug"):
        return "removing vCPUs from a running VM is not reliable here"
    if target.memory_mib > now.max_memory_mib:
        return f"{target.memory_mib} MiB is above the running maximum of {now.max_memory_mib} MiB"
    if target.memory_mib != now.memory_mib and not can("balloon_resize"):
        return "this hypervisor cannot resize a running VM's memory"
    if target.iops != now.iops and not can("live_iotune"):
        return "this hypervisor cannot change a running disk's IOPS cap"
    return None
