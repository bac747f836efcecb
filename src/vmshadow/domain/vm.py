"""The full VM a transition launches or resizes, as the domain sees it."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    virtual_size: int = 0  # bytes: the smallest root disk a VM of it can have


NetworkKind = Literal["network", "bridge", "user", "none"]
_IFACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# A Linux user name cloud-init will create (useradd's rules, lower case).
USER_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# One OpenSSH public key line: type, base64 body, optional comment.
SSH_KEY_RE = re.compile(
    r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)"
    r"|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?"
)
MAX_SSH_KEYS = 32
MAX_SSH_KEY_BYTES = 16 * 1024
MAX_USER_DATA_BYTES = 64 * 1024
MAX_DISK_GIB = 65536


@dataclass(frozen=True)
class Network:
    """The VM's NIC, as virt-install's ``--network``: a libvirt network, a host
    bridge, QEMU's user networking (reachable only through a port forwarded on
    127.0.0.1 to the guest's SSH), or none."""

    kind: NetworkKind
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "network":
            return self.name
        if self.kind == "bridge":
            return f"bridge:{self.name}"
        return self.kind


def parse_network(text: str) -> Network:
    """``NAME``, ``bridge:BR``, ``user`` or ``none``; else ConfigError naming ``network``."""
    text = text.strip()
    if text in ("user", "none"):
        return Network(text)  # type: ignore[arg-type]
    kind: NetworkKind = "network"
    name = text
    if text.startswith("bridge:"):
        kind, name = "bridge", text.removeprefix("bridge:")
    if not _IFACE_NAME.fullmatch(name):
        raise ConfigError(
            "network",
            f"{text[:80]!r} is not a network: give a libvirt network NAME, bridge:BRIDGE, "
            "user or none",
        )
    return Network(kind, name)


def check_ssh_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Each key one OpenSSH public key line (never a private key); else ConfigError."""
    if len(keys) > MAX_SSH_KEYS:
        raise ConfigError("ssh_keys", f"{len(keys)} keys: at most {MAX_SSH_KEYS}")
    out = []
    for n, key in enumerate(keys):
        key = key.strip()
        if len(key.encode()) > MAX_SSH_KEY_BYTES or not SSH_KEY_RE.fullmatch(key):
            raise ConfigError(
                f"ssh_keys.{n}",
                "not an OpenSSH public key line (ssh-ed25519 AAAA... comment): "
                "give the .pub file, never the private key",
            )
        out.append(key)
    return tuple(out)


@dataclass(frozen=True)
class GuestSetup:
    """What a VM from a store image gets at first boot (cloud-init NoCloud) and its NIC.

    ``user`` None keeps the image's own default user (cloud-init's
    ``users: [default]``, e.g. ``debian``); the keys go to whichever user it is.
    ``disk_gib`` None keeps the image's virtual size.
    """

    network: Network = field(default_factory=lambda: Network("none"))
    user: str | None = None
    ssh_keys: tuple[str, ...] = ()
    user_data: str | None = None
    disk_gib: int | None = None

    def __post_init__(self) -> None:
        if self.user is not None and (not USER_NAME_RE.fullmatch(self.user) or self.user == "root"):
            raise ConfigError(
                "user",
                f"{self.user[:40]!r} is not a user name cloud-init can create: lower case "
                "letters, digits, '_' and '-', at most 32, not root",
            )
        check_ssh_keys(self.ssh_keys)
        if self.user_data is not None and len(self.user_data.encode()) > MAX_USER_DATA_BYTES:
            raise ConfigError("user_data", f"larger than {MAX_USER_DATA_BYTES // 1024} KiB")
        if self.disk_gib is not None and not 1 <= self.disk_gib <= MAX_DISK_GIB:
            raise ConfigError("disk_gib", f"must be 1..{MAX_DISK_GIB} GiB, got {self.disk_gib}")

    def as_dict(self) -> dict[str, object]:
        return {
            "network": str(self.network),
            "user": self.user,
            "ssh_keys": list(self.ssh_keys),
            "user_data": self.user_data,
            "disk_gib": self.disk_gib,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> GuestSetup:
        disk = doc.get("disk_gib")
        user = doc.get("user")
        data = doc.get("user_data")
        keys = doc.get("ssh_keys") or []
        return cls(
            network=parse_network(str(doc.get("network") or "none")),
            user=str(user) if user else None,
            ssh_keys=tuple(str(k) for k in keys) if isinstance(keys, list) else (),
            user_data=str(data) if data is not None else None,
            disk_gib=int(disk) if isinstance(disk, int | float | str) else None,
        )


@dataclass(frozen=True)
class VmVolumes:
    """Where a store-image VM's disks go: volumes of one libvirt pool.

    Named after the VM *and* its transition, so a volume that exists is known
    to be this transition's own (a crash repeats define) and never another's.
    """

    pool: str
    directory: Path

    @staticmethod
    def root_name(vm: str, transition_id: str) -> str:
        return f"{vm}-{transition_id}.qcow2"

    @staticmethod
    def seed_name(vm: str, transition_id: str) -> str:
        return f"{vm}-{transition_id}-seed.iso"

    @staticmethod
    def scratch_name(vm: str, transition_id: str) -> str:
        """The built-in image's scratch disk (the one its I/O phases use)."""
        return f"{vm}-{transition_id}-scratch.img"


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
    # A store image's VM only: its first-boot set-up and where its volumes go.
    guest: GuestSetup | None = None
    volumes: VmVolumes | None = None
    ssh_port: int | None = None  # user networking: 127.0.0.1:PORT -> guest:22

    def __post_init__(self) -> None:
        validate_vm_name(self.name)
        if isinstance(self.image, DiskImage) and (self.guest is None or self.volumes is None):
            raise ValueError(f"{self.name}: a store image's VM needs its guest set-up and volumes")
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


def ssh_command(port: int | None, user: str | None) -> str | None:
    """How to reach a guest on user networking through its forwarded port; None without."""
    if port is None:
        return None
    return f"ssh -p {port} {user or '<user>'}@127.0.0.1"


@dataclass(frozen=True)
class GuestStatus:
    """What a launched VM's guest agent says: whether it answers, how far
    cloud-init got (``running``, ``done``, ``error``; None if unknown) and
    the addresses the guest has."""

    agent: bool
    cloud_init: str | None = None
    errors: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.agent and self.cloud_init in ("done", "error")
