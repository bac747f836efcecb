"""The hypervisor port: the few verbs the rest of vmshadow needs from libvirt.

Kept as small as httpx's transport: start a shadow, destroy it, read its
counters, open the channel to its agent, and find shadows left by a crash.
The full VM a transition launches has its own small port, ``FullVmHost``,
and what a host is (versions, KVM or not, its CPUs and memory) is ``HostFacts``.
``Host`` is all three: one libvirt host as the host pool hands it out. Callers
are typed against these; only the composition roots (``server.py``, the CLI's
commands and ``doctor.py``, ``hypervisor/pool.py``, the benches) name the
libvirt adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import ShadowSpec
from vmshadow.domain.vm import FullVmSpec, GuestStatus, ResizeMode
from vmshadow.hypervisor.domainxml import ShadowMetadata


@dataclass(frozen=True)
class DomainCounters:
    """Cumulative host-side counters of one domain at one instant."""

    taken_at: float  # host monotonic seconds
    cpu_time_ns: int
    vcpu_time_ns: int
    rss_kib: int | None
    guest_used_kib: int | None  # from balloon stats, net of page cache
    rd_reqs: int
    wr_reqs: int
    rd_bytes: int
    wr_bytes: int
    # Time the vCPU threads were runnable but queued behind other host work
    # (schedstat's run delay; 0 where the driver does not report it).
    vcpu_delay_ns: int = 0


class AgentTransport(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv(self, max_bytes: int, timeout: float) -> bytes: ...
    def close(self) -> None: ...


class Hypervisor(Protocol):
    uri: str

    def start_shadow(self, spec: ShadowSpec, *, scratch_cache: str = "none") -> None: ...
    def destroy(self, name: str) -> bool: ...
    def is_running(self, name: str) -> bool: ...
    def counters(self, name: str) -> DomainCounters | None: ...
    def open_agent_channel(self, name: str) -> AgentTransport: ...
    def list_shadows(self) -> list[tuple[str, ShadowMetadata]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class FullVmHost(Protocol):
    """The verbs the controller needs for a transition's full VM.

    Separate from ``Hypervisor`` so the shadow side stays as small as it is.
    Every verb is idempotent; each raises ``HypervisorError`` when libvirt
    refuses, ``set_full_vm_allocation`` also ``ConfigError`` beyond the maxima.
    """

    def define_full_vm(self, spec: FullVmSpec) -> None: ...
    def set_full_vm_allocation(self, name: str, allocation: Allocation) -> None: ...
    def start_full_vm(self, name: str) -> bool: ...
    def resize_mode(self, name: str, allocation: Allocation) -> ResizeMode: ...
    def apply_resize(self, name: str, allocation: Allocation) -> ResizeMode: ...
    def remove_full_vm(self, name: str) -> bool: ...
    def list_managed_vms(self) -> list[tuple[str, ShadowMetadata]]: ...
    def full_vm_info(self, name: str) -> dict[str, object] | None: ...
    def guest_status(self, name: str) -> GuestStatus | None: ...


class StorageHost(Protocol):
    """libvirt storage pools: the image store and the VMs' disks (``hypervisor.storage``)."""

    def ensure_pool(self, name: str, path: Path) -> None: ...
    def refresh_pool(self, name: str) -> None: ...
    def pool_volumes(self, name: str) -> dict[str, Path]: ...
    def create_overlay_volume(
        self, pool_name: str, volume: str, backing: Path, backing_format: str, capacity: int
    ) -> Path: ...
    def delete_volume(self, pool_name: str, volume: str) -> bool: ...


class HostFacts(Protocol):
    """What a host is: the accelerator's cache key and probe, and its size."""

    uri: str

    def versions(self) -> dict[str, str]: ...
    def supports_domain_type(self, domain_type: str) -> bool: ...
    def host_resources(self) -> dict[str, int]: ...
    def networks(self) -> dict[str, bool]: ...


class Host(Hypervisor, FullVmHost, StorageHost, HostFacts, Protocol):
    """One libvirt host: its shadows, its full VMs, its storage pools and its facts."""


# Opens a host by its libvirt URI: the adapter's constructor, given by a composition root.
Connect = Callable[[str], Host]
