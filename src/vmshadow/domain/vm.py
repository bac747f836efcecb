"""The full VM a transition launches or resizes, as the domain sees it."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.shadow import SHADOW_NAME_PREFIX, Accelerator

VM_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")


def validate_vm_name(name: str) -> str:
    """``name`` if it can name a full VM (a libvirt domain and its folder); else ConfigError."""
    if not VM_NAME_RE.fullmatch(name):
        raise ConfigError(
            "name",
            f"{name!r} is not a valid VM name: 1-63 lowercase letters, digits and '-', "
            "starting with a letter",
        )
    if name.startswith(SHADOW_NAME_PREFIX):
        raise ConfigError("name", f"names starting with {SHADOW_NAME_PREFIX!r} are for shadows")
    return name


@dataclass(frozen=True)
class BuiltinImage:
    """Boot vmshadow's own kernel and root (an overlay of the base): the agent
    runs inside, so the launched VM can run and report the same workload."""

    kernel: Path
    initrd: Path
    base: Path


@dataclass(frozen=True)
class DiskImage:
    """A user's cloud image: an overlay backed by it, booted by the BIOS from disk.

    ``backing`` is the checked chain below ``path`` (file, format), named in
    the domain so that libvirt reads exactly that and changes no owner.
    """

    path: Path
    format: str = "qcow2"
    backing: tuple[tuple[Path, str], ...] = ()


@dataclass(frozen=True)
class FullVmSpec:
    """Everything needed to define one transition's full VM.

    The VM starts with ``allocation`` and may grow live up to ``max_vcpus``
    and ``max_memory_mib``; beyond them a resize restarts it.
    """

    name: str
    transition_id: str
    allocation: Allocation
    max_vcpus: int
    max_memory_mib: int
    accelerator: Accelerator
    image: BuiltinImage | DiskImage
    vm_dir: Path
    created_at: str
    owner: str = ""

    def __post_init__(self) -> None:
        validate_vm_name(self.name)
        if self.max_vcpus < self.allocation.vcpus:
            raise ConfigError(
                "max_vcpus", f"{self.max_vcpus} is below the {self.allocation.vcpus} allocated"
            )
        if self.max_memory_mib < self.allocation.memory_mib:
            raise ConfigError(
                "max_memory_mib",
                f"{self.max_memory_mib} MiB is below the "
                f"{self.allocation.memory_mib} MiB allocated",
            )


class ResizeMode(enum.StrEnum):
    """How a new allocation reaches a VM, as the user is told before confirming.

    - ``LIVE``: applied to the running VM at once, without a restart. vCPUs are
      hot-plugged up to the VM's maximum, memory moves through the balloon up
      to its maximum, and the IOPS cap changes on the running disks.
    - ``RESTART``: beyond what can change live (more than the maxima, or fewer
      vCPUs): the VM is shut down (gracefully, then forcibly after a short
      grace), its definition changed, and started again. The guest's programs
      stop and it boots afresh: a short outage.
    - ``OFFLINE``: the VM is not running: only its definition changes, and the
      new size applies when it next starts.
    """

    LIVE = "live"
    RESTART = "restart"
    OFFLINE = "offline"
