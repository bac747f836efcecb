"""The hosts vmshadow places shadows and VMs on: one libvirt connection each.

Connections are opened on first use and kept: a remote host (``qemu+ssh://``)
costs a handshake per connection, and a libvirt test-driver host described by
an XML file (``test:///path/host.xml``) exists only as long as its
connection, so reopening it would forget every domain on it. A connection
found dead is opened again. ``with pool.connect(name) as hv:`` never closes
the shared connection; ``pool.close()`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vmshadow.config import Settings
from vmshadow.domain.errors import HypervisorError, NotFoundError
from vmshadow.domain.placement import HostCapacity
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

Connect = Callable[[str], LibvirtHypervisor]


@dataclass(frozen=True)
class HostRef:
    name: str
    uri: str


class HostPool:
    def __init__(self, hosts: Sequence[HostRef], *, connect: Connect = LibvirtHypervisor) -> None:
        if not hosts:
            raise ValueError("a host pool needs at least one host")
        self.hosts = list(hosts)
        self._by_name = {h.name: h for h in self.hosts}
        self._connect = connect
        self._open: dict[str, LibvirtHypervisor] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    @property
    def default(self) -> str:
        return self.hosts[0].name

    def uri(self, name: str) -> str:
        return self._ref(name).uri

    def _ref(self, name: str) -> HostRef:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFoundError(
                f"host {name!r} is not in the host pool ({', '.join(self.names)})"
            ) from None

    def connect(self, name: str | None = None) -> LibvirtHypervisor:
        """The shared connection to host ``name`` (the first host by default)."""
        ref = self._ref(name or self.default)
        with self._lock:
            hv = self._open.get(ref.name)
            if hv is not None and hv.is_alive():
                return hv
            if hv is not None:
                hv.close_connection()
            hv = self._connect(ref.uri)
            hv.shared = True
            self._open[ref.name] = hv
            return hv

    def capacities(self) -> list[HostCapacity]:
        """Every host as libvirt reports it; an unreachable host carries its error."""
        out = []
        for ref in self.hosts:
            try:
                out.append(self.connect(ref.name).host_capacity(ref.name))
            except HypervisorError as exc:
                out.append(HostCapacity(ref.name, 0, 0, "", error=str(exc)))
        return out

    def managed_vms(self) -> dict[str, set[str]]:
        """Names of vmshadow's VMs on each reachable host."""
        out: dict[str, set[str]] = {}
        for ref in self.hosts:
            try:
                out[ref.name] = {n for n, _m in self.connect(ref.name).list_managed_vms()}
            except HypervisorError:
                continue
        return out

    def domain_names(self) -> dict[str, set[str]]:
        """Names of every domain on each reachable host (what placement asks:
        whether a launched VM still exists; cheaper than ``managed_vms``)."""
        out: dict[str, set[str]] = {}
        for ref in self.hosts:
            try:
                out[ref.name] = self.connect(ref.name).domain_names()
            except HypervisorError:
                continue
        return out

    def find_vm(self, vm_name: str) -> str | None:
        """The host where a domain of this name exists (any domain, ours or not)."""
        for ref in self.hosts:
            try:
                if self.connect(ref.name).state(vm_name) is not None:
                    return ref.name
            except HypervisorError:
                continue
        return None

    def close(self) -> None:
        with self._lock:
            for hv in self._open.values():
                hv.close_connection()
            self._open.clear()


def pool_from_settings(settings: Settings, *, connect: Connect = LibvirtHypervisor) -> HostPool:
    """The pool of ``settings.host_pool``: one host at ``libvirt_uri`` unless configured."""
    return HostPool([HostRef(h.name, h.uri) for h in settings.host_pool], connect=connect)
