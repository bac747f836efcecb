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

    def __post_init__(self) -> None:
        if not _NAME.match(self.shadow_id):
            raise ConfigError("shadow_id", "must be lowercase letters, digits and dashes")

    @property
    def name(self) -> str:
        return f"{SHADOW_NAME_PREFIX}{self.shadow_id}"
