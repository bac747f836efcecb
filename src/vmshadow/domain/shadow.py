"""What a shadow VM is, independent of any hypervisor.

A shadow is small on purpose (1 vCPU, 512 MiB by default) and isolated: it
has no network interface, only a virtio-serial channel to its agent.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ConfigError

AGENT_CHANNEL = "org.vmshadow.agent.0"
SHADOW_NAME_PREFIX = "vmshadow-shadow-"
# The virtio serial of a target-OS shadow's scratch disk: the guest finds the
# disk fio may use by it, whatever name its kernel gives the disk.
SCRATCH_SERIAL = "vmshadow-scratch"
TOOLS_SERIAL = "vmshadow-tools"
# The volume label of the tools disk (agent, stress-ng, fio) a target-OS shadow mounts.
TOOLS_LABEL = "VMSTOOLS"
# The phase a target-OS shadow runs before its profile: the OS alone, at rest.
IDLE_PHASE_ID = "os-idle"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Accelerator(enum.StrEnum):
    """How QEMU runs guest code: hardware virtualisation or software emulation."""

    KVM = "kvm"
    TCG = "tcg"

    @property
    def libvirt_domain_type(self) -> str:
        return "kvm" if self is Accelerator.KVM else "qemu"


@dataclass(frozen=True)
class ShadowSize:
    """Resources a shadow gets; small by default because it only samples cost per unit."""

    vcpus: int = 1
    memory_mib: int = 512
    scratch_mib: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.vcpus <= 64:
            raise ConfigError("shadow.vcpus", f"must be 1..64, got {self.vcpus}")
        if not 256 <= self.memory_mib <= 65536:
            raise ConfigError("shadow.memory_mib", f"must be 256..65536, got {self.memory_mib}")
        if not 64 <= self.scratch_mib <= 65536:
            raise ConfigError("shadow.scratch_mib", f"must be 64..65536, got {self.scratch_mib}")


DEFAULT_KERNEL_ARGS: tuple[str, ...] = (
    "console=ttyS0",
    "loglevel=4",
    # The guest reboots into nothing: panic means "power off now".
    "panic=-1",
    # Mitigations cost a lot under TCG and a shadow runs only our code.
    "mitigations=off",
    # Boot-time work that buys nothing in a throwaway guest with no
    # network, no users and no hardware but virtio: crypto self-tests,
    # audit and LSMs, the timer and TSC checks, legacy serial ports and
    # the PS/2 mouse probe. Together about half a second under TCG.
    "cryptomgr.notests",
    "audit=0",
    "lsm=capability",
    "no_timer_check",
    "tsc=reliable",
    "8250.nr_uarts=1",
    "i8042.noaux",
    "i8042.nopnp",
)


@dataclass(frozen=True)
class TargetOs:
    """The disks of a shadow that boots the target's own OS instead of vmshadow's.

    ``chain`` is the store image and its backing files, (file, format), the
    image first: the shadow's overlay sits on top and the domain names the
    chain, so libvirt neither probes nor relabels the user's files.
    """

    image: str  # the store image's name, as the transition names it
    chain: tuple[tuple[Path, str], ...]
    seed: Path  # this shadow's NoCloud seed (cloud-init starts the agent)
    tools: Path  # the shared, read-only tools disk

    def __post_init__(self) -> None:
        if not self.chain:
            raise ConfigError("image", f"store image {self.image!r} has no file")


@dataclass(frozen=True)
class ShadowOs:
    """Which OS a shadow ran, and why when it was not the one asked for."""

    image: str  # what the transition named: "builtin" or a store image
    used: str  # "target" (that image's own OS) or "builtin" (vmshadow's)
    reason: str = ""  # why the built-in OS stood in; empty when it did not

    def as_dict(self) -> dict[str, str]:
        return {"image": self.image, "used": self.used, "reason": self.reason}


@dataclass(frozen=True)
class OsIdle:
    """The target OS at rest, before any workload: what the VM pays for its OS alone."""

    memory_mib: float  # guest memory used, net of page cache (its peak while idle)
    vcpus: float  # busy vCPUs, the host's view (mean while idle)
    processes: int | None = None  # processes the guest ran, where the agent counts them
    settled: bool = True  # False: the boot was still busy when the idle phase had to run

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "memory_mib": round(self.memory_mib, 1),
            "vcpus": round(self.vcpus, 3),
            "processes": self.processes,
            "settled": self.settled,
        }


@dataclass(frozen=True)
class ShadowSpec:
    """Everything needed to define one shadow domain."""

    shadow_id: str
    size: ShadowSize
    accelerator: Accelerator
    kernel: Path
    initrd: Path
    root_disk: Path
    scratch_disk: Path
    console_log: Path
    run_dir: Path
    created_at: str
    transition_id: str | None = None
    owner: str = ""  # host:pid of the process that started it, to reap orphans
    kernel_args: tuple[str, ...] = DEFAULT_KERNEL_ARGS
    # The shared base behind root_disk (qcow2): named in the domain so that
    # libvirt leaves its owner alone (see hypervisor.domainxml.backing_chain).
    base: Path | None = None
    # Set: the shadow boots this store image from its disk (BIOS, cloud-init)
    # instead of the built-in kernel, initrd and base above.
    target: TargetOs | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.shadow_id):
            raise ConfigError("shadow_id", "must be lowercase letters, digits and dashes")

    @property
    def name(self) -> str:
        return f"{SHADOW_NAME_PREFIX}{self.shadow_id}"
