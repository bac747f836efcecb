"""A pre-booted full VM: paused at guest ready, sized and resumed on confirm.

A mixin of ``FullVmMixin`` (it uses its lookups and connection). A paused
QEMU uses no host CPU and keeps its memory, so a VM booted while its user
decides starts in the time a resume takes. What the decision changes is
applied while it is still paused (vCPU hot-plug, the balloon, the IOPS cap,
all within the maxima it booted with); the guest's side of it (onlining the
hot-added vCPUs, its clock, which stood still while paused) waits for the
resume, through an agent when the guest runs one.
"""

from __future__ import annotations

import contextlib
import os
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import libvirt

from vmshadow.agent.host.adapter import AgentAdapter
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError, HypervisorError, VmshadowError
from vmshadow.domain.shadow import AGENT_CHANNEL
from vmshadow.hypervisor.fullvm_resize import _NO_AGENT, _online_in_guest, live_size
from vmshadow.hypervisor.fullvmxml import workload_disk
from vmshadow.hypervisor.support import LiveSize

if TYPE_CHECKING:
    from vmshadow.domain.vm import GuestStatus

_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
# The built-in guest's agent greets at once on connect once it runs: a short
# wait per probe, repeated by the caller, is enough and never blocks long.
HELLO_PROBE_S = 1.0
AGENT_SYNC_S = 3.0


class PauseMixin:
    _conn: Any

    # Provided by FullVmMixin and LibvirtHypervisor.
    def _owned(self, name: str) -> Any:
        raise NotImplementedError

    def agent_socket_path(self, name: str) -> str:
        raise NotImplementedError

    def _vmshadow_agent(self, name: str) -> AgentAdapter | None:
        """The built-in guest's own agent, by its socket (the channel opener of a
        test host may stand in for shadows only); None when it has no socket."""
        # Here, not at the top: libvirt_adapter imports this module through its mixins.
        from vmshadow.hypervisor.libvirt_adapter import UnixSocketTransport

        try:
            return AgentAdapter(UnixSocketTransport(self.agent_socket_path(name)))
        except (HypervisorError, OSError):
            return None

    if TYPE_CHECKING:  # GuestAgentMixin's, later in the MRO: no stub that would hide it

        def guest_status(self, name: str) -> GuestStatus | None: ...

    def pause_full_vm(self, name: str) -> bool:
        """Pause the running VM; False if it was paused already."""
        dom = self._owned(name)
        try:
            if int(dom.state()[0]) == libvirt.VIR_DOMAIN_PAUSED:
                return False
            dom.suspend()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot pause VM {name}: {exc}") from exc
        return True

    def resume_full_vm(self, name: str) -> bool:
        """Resume the paused VM; False if it was not paused."""
        dom = self._owned(name)
        try:
            if int(dom.state()[0]) != libvirt.VIR_DOMAIN_PAUSED:
                return False
            dom.resume()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot resume VM {name}: {exc}") from exc
        return True

    def power_off_full_vm(self, name: str) -> bool:
        """Pull the plug, keeping the definition and disks; False if it was not running."""
        dom = self._owned(name)
        try:
            if not dom.isActive():
                return False
            dom.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return False  # stopped meanwhile
            raise HypervisorError(f"cannot stop VM {name}: {exc}") from exc
        return True

    def live_maxima(self, name: str) -> LiveSize:
        """The running (or paused) VM's size and the maxima it booted with."""
        return live_size(self._owned(name), name)

    def set_live_size(self, name: str, a: Allocation) -> None:
        """Give the running or paused VM ``a`` within its maxima, now and for its
        next boot. The guest's side (onlining hot-added vCPUs) is ``online_guest_vcpus``."""
        dom = self._owned(name)
        now = self.live_maxima(name)
        if a.vcpus > now.max_vcpus:
            raise ConfigError("vcpus", f"{a.vcpus} is above {name}'s maximum of {now.max_vcpus}")
        if a.memory_mib > now.max_memory_mib:
            raise ConfigError(
                "memory_mib",
                f"{a.memory_mib} MiB is above {name}'s maximum of {now.max_memory_mib} MiB",
            )
        try:
            # LIVE then CONFIG, two calls: see "affect_live_and_config_at_once".
            for flag in (_LIVE, _CONFIG):
                if a.vcpus != now.vcpus or flag == _CONFIG:
                    dom.setVcpusFlags(a.vcpus, flag)
                if a.memory_mib != now.memory_mib or flag == _CONFIG:
                    dom.setMemoryFlags(a.memory_mib * 1024, flag)
                if a.iops != now.iops:
                    dev = workload_disk(dom.XMLDesc(0))
                    if dev is not None:
                        dom.setBlockIoTune(dev, {"total_iops_sec": a.iops or 0}, flag)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot size VM {name} live: {exc}") from exc

    def online_guest_vcpus(self, name: str, vcpus: int) -> None:
        """Bring hot-added vCPUs online through the guest agent, if there is one
        (after the resume: a paused guest's agent cannot answer)."""
        _online_in_guest(self._owned(name), vcpus)

    def sync_guest_clock(self, name: str) -> str | None:
        """Set the guest's clock, which stood still while paused; says through
        what (the qemu guest agent, vmshadow's own agent) or None (no agent)."""
        dom = self._owned(name)
        try:
            dom.setTime(None, libvirt.VIR_DOMAIN_TIME_SYNC)
            return "guest agent"
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in _NO_AGENT | {libvirt.VIR_ERR_AGENT_UNSYNCED}:
                raise HypervisorError(f"cannot set the clock of VM {name}: {exc}") from exc
        if not _has_vmshadow_agent(dom):
            return None
        client = self._vmshadow_agent(name)
        if client is None:
            return None
        try:
            client.wait_hello(AGENT_SYNC_S)
            client.resync(time.time(), os.urandom(32), timeout=AGENT_SYNC_S)
            return "vmshadow agent"
        except VmshadowError:
            return None
        finally:
            client.close()

    def guest_booted(self, name: str) -> bool | None:
        """Whether the guest is ready to be paused: the built-in OS's agent
        greets, a store image's guest agent answers and cloud-init is done.
        None when this host cannot tell (a driver that runs no guest)."""
        dom = self._owned(name)
        try:
            if not dom.isActive():
                return False
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read the state of VM {name}: {exc}") from exc
        if not _has_vmshadow_agent(dom):
            status = self.guest_status(name)
            return None if status is None else status.ready
        client = self._vmshadow_agent(name)
        if client is None:
            return None  # no socket for the channel: a driver that runs no guest
        try:
            client.wait_hello(HELLO_PROBE_S)
            return True
        except VmshadowError:
            return False
        finally:
            client.close()


def _has_vmshadow_agent(dom: Any) -> bool:
    """The built-in image's VM: vmshadow's agent channel, no qemu-guest-agent."""
    with contextlib.suppress(libvirt.libvirtError, ET.ParseError):
        root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirt's output
        for target in root.findall("devices/channel/target"):
            if target.get("name") == AGENT_CHANNEL:
                return True
    return False
