"""Resizing a full VM: live where libvirt and the guest allow, else a restart.

A mixin of ``FullVmMixin`` (it uses its lookups and connection). What may
change live is decided by the table in ``hypervisor.support``. vCPUs
hot-plugged into a VM with a guest agent are brought online through it:
a Linux guest leaves a hot-added vCPU offline until told otherwise.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import libvirt

from vmshadow.agent.host.adapter import AgentAdapter
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import HypervisorError, VmshadowError
from vmshadow.domain.vm import ResizeMode
from vmshadow.hypervisor.fullvmxml import iops_of, iotune_of, with_allocation, workload_disk
from vmshadow.hypervisor.port import AgentTransport
from vmshadow.hypervisor.support import Can, LiveSize, needs_restart

SHUTDOWN_GRACE_S = 10.0
AGENT_HELLO_S = 3.0  # the agent greets at once on connect; longer means someone else holds it
AGENT_BYE_S = 5.0
GUEST_ONLINE_S = 10.0
# No guest agent at all: nothing to wait for.
_NO_AGENT = {
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_OPERATION_INVALID,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_INVALID_ARG,  # a driver without the flag (the test driver)
}
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


class ResizeMixin:
    _conn: Any

    # Provided by FullVmMixin and LibvirtHypervisor.
    def _owned(self, name: str) -> Any:
        raise NotImplementedError

    def _define(self, name: str, xml: str) -> None:
        raise NotImplementedError

    def open_agent_channel(self, name: str) -> AgentTransport:
        raise NotImplementedError

    @property
    def can(self) -> Can:
        raise NotImplementedError

    # -- resize ----------------------------------------------------------------------------
    def resize_mode(self, name: str, allocation: Allocation) -> ResizeMode:
        """How ``apply_resize`` would give the VM ``allocation``, without doing it."""
        dom = self._owned(name)
        if not _active(dom, name):
            return ResizeMode.OFFLINE
        why = needs_restart(self._live_size(dom, name), allocation, self.can)
        return ResizeMode.LIVE if why is None else ResizeMode.RESTART

    def apply_resize(self, name: str, allocation: Allocation) -> ResizeMode:
        """Give the VM ``allocation``, live where possible; returns how it was done."""
        mode = self.resize_mode(name, allocation)
        dom = self._owned(name)
        try:
            if mode is ResizeMode.LIVE:
                self._resize_live(dom, name, allocation)
                return mode
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            self._define(name, with_allocation(xml, allocation, raise_maxima=True))
            if mode is ResizeMode.RESTART:
                self._stop(dom, name)
                dom.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot resize VM {name} ({mode.value}): {exc}") from exc
        return mode

    def _resize_live(self, dom: Any, name: str, a: Allocation) -> None:
        now = self._live_size(dom, name)
        # Two calls each, LIVE then CONFIG: see "affect_live_and_config_at_once".
        for flag in (_LIVE, _CONFIG):
            if a.vcpus != now.vcpus or flag == _CONFIG:
                dom.setVcpusFlags(a.vcpus, flag)
            if flag == _LIVE and a.vcpus > now.vcpus:
                _online_in_guest(dom, a.vcpus)
            dom.setMemoryFlags(a.memory_mib * 1024, flag)
            _retune_live(dom, a, flag)

    def _live_size(self, dom: Any, name: str) -> LiveSize:
        return live_size(dom, name)

    def _stop(self, dom: Any, name: str) -> None:
        """Ask the guest to shut down, then pull the plug after a short grace."""
        self._ask_agent_to_stop(name)
        # ACPI for user images; the built-in guest has no ACPI daemon and
        # ignores it, which is why its agent is asked first.
        with contextlib.suppress(libvirt.libvirtError):
            dom.shutdown()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while time.monotonic() < deadline and dom.isActive():
            time.sleep(0.2)
        if dom.isActive():
            dom.destroy()

    def _ask_agent_to_stop(self, name: str) -> None:
        """The built-in image powers off when its agent exits: ask it to, if it listens."""
        try:
            client = AgentAdapter(self.open_agent_channel(name))
        except HypervisorError:
            return  # no agent channel (a user image) or nobody listening
        try:
            client.wait_hello(AGENT_HELLO_S)
            client.shutdown(timeout=AGENT_BYE_S)
        except VmshadowError:
            pass  # the ACPI request and, failing that, destroy still follow
        finally:
            client.close()


def _retune_live(dom: Any, a: Allocation, flag: int) -> None:
    """Set the workload disk's IOPS rate, burst rate and burst length where they
    differ from ``a``'s. All three go together, 0 for unset: a rate without a
    burst must also clear an old burst rate and length (QEMU refuses a length
    above 1 s without a burst rate)."""
    xml = dom.XMLDesc(0 if flag == _LIVE else libvirt.VIR_DOMAIN_XML_INACTIVE)
    wanted = (a.iops, a.iops_burst if a.iops else None, a.iops_burst_s if a.iops else None)
    dev = workload_disk(xml)
    if dev is None or iotune_of(xml) == wanted:
        return
    rate, burst, length = (v or 0 for v in wanted)
    params = {"total_iops_sec": rate, "total_iops_sec_max": burst}
    params["total_iops_sec_max_length"] = length
    dom.setBlockIoTune(dev, params, flag)


def _active(dom: Any, name: str) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"cannot read the state of VM {name}: {exc}") from exc


def _online_in_guest(dom: Any, vcpus: int) -> None:
    """Bring hot-added vCPUs online through the guest agent, if there is one.

    A Linux guest without a udev rule for it leaves a hot-added vCPU offline,
    and the guest sees the new CPU only after its ACPI event is handled, so the
    agent's call is repeated for a few seconds. Without an agent (the built-in
    image) they stay plugged, and the guest may online them itself.
    """
    deadline = time.monotonic() + GUEST_ONLINE_S
    while True:
        try:
            dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_VCPU_GUEST)
            if int(dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_GUEST)) >= vcpus:
                return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _NO_AGENT:
                return
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


def live_size(dom: Any, name: str) -> LiveSize:
    """A running (or paused) domain's size and the maxima it booted with."""
    try:
        return LiveSize(
            vcpus=int(dom.vcpusFlags(_LIVE)),
            max_vcpus=int(dom.vcpusFlags(_LIVE | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)),
            memory_mib=int(dom.info()[2]) // 1024,
            max_memory_mib=int(dom.maxMemory()) // 1024,
            iops=iops_of(dom.XMLDesc(0)),
        )
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"cannot read the size of VM {name}: {exc}") from exc
