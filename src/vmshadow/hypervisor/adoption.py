"""Domains an operator defined with vmshadow's request element (``requestxml``):
found, marked, sized in place, put back, and answered in their status element.

A mixin of ``LibvirtHypervisor``. An adopted domain is the user's: vmshadow
changes its size (through libvirt's own calls, so every other element stays
as libvirt wrote it) and its own two metadata elements, and nothing else; it
never undefines it or touches its disks (``remove_full_vm`` refuses a domain
whose role is not ``vm``).
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.vm import ResizeMode
from vmshadow.hypervisor.domainxml import (
    METADATA_KEY,
    METADATA_NS,
    ShadowMetadata,
    metadata_element,
    parse_metadata_element,
)
from vmshadow.hypervisor.fullvmxml import configured_size, disk_targets
from vmshadow.hypervisor.requestxml import (
    REQUEST_NS,
    STATUS_KEY,
    STATUS_NS,
    DomainRequest,
    StatusElement,
    parse_status,
    status_xml,
)
from vmshadow.hypervisor.support import LiveSize

ADOPTED_ROLE = "adopted"
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_ELEMENT = libvirt.VIR_DOMAIN_METADATA_ELEMENT


class AdoptionMixin:
    _conn: Any

    # Provided by FullVmMixin and ResizeMixin.
    def _lookup(self, name: str) -> Any | None:
        raise NotImplementedError

    def resize_mode(self, name: str, allocation: Allocation) -> ResizeMode:
        raise NotImplementedError

    def _resize_live(self, dom: Any, name: str, a: Allocation) -> None:
        raise NotImplementedError

    def _stop(self, dom: Any, name: str) -> None:
        raise NotImplementedError

    # -- finding -----------------------------------------------------------------------
    def domain_requests(self) -> list[DomainRequest]:
        """Every domain of the host, with its request and status elements."""
        try:
            domains = self._conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list domains: {exc}") from exc
        out = []
        for dom in domains:
            with contextlib.suppress(libvirt.libvirtError):  # vanished while we looked
                active = bool(dom.isActive())
                status = _element(dom, STATUS_NS, active)
                meta = _element(dom, METADATA_NS, active)
                mine = parse_metadata_element(meta) if meta else None
                out.append(
                    DomainRequest(
                        name=dom.name(),
                        uuid=dom.UUIDString(),
                        active=active,
                        request=_element(dom, REQUEST_NS, active),
                        status=parse_status(status) if status else None,
                        adopted_by=(
                            mine.transition_id if mine and mine.role == ADOPTED_ROLE else None
                        ),
                    )
                )
        return out

    def domain_xml(self, name: str) -> str:
        """The persistent definition of a domain (what adoption sizes and restores)."""
        dom = self._domain(name)
        try:
            return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read domain {name}: {exc}") from exc

    # -- marking -----------------------------------------------------------------------
    def adopt_domain(self, name: str, transition_id: str) -> None:
        """Mark the domain as transition ``transition_id``'s (vmshadow's own metadata
        element, role ``adopted``): its full-VM verbs then apply to it."""
        meta = ShadowMetadata(
            role=ADOPTED_ROLE, shadow_id="", run_dir="", created_at="", transition_id=transition_id
        )
        el = metadata_element(meta)
        # libvirt takes the element without its namespace and adds the key as prefix.
        for node in el.iter():
            node.tag = node.tag.rsplit("}", 1)[-1]
        self._set_metadata(name, ET.tostring(el, encoding="unicode"), METADATA_KEY, METADATA_NS)

    def release_domain(self, name: str) -> None:
        """Remove vmshadow's mark (the status element stays: it says what was done)."""
        self._set_metadata(name, None, None, METADATA_NS)

    def set_request_status(self, name: str, status: StatusElement) -> None:
        self._set_metadata(name, status_xml(status), STATUS_KEY, STATUS_NS)

    def remove_request(self, name: str) -> None:
        """The request is done: removed, so it is never taken again."""
        self._set_metadata(name, None, None, REQUEST_NS)

    # -- sizing ------------------------------------------------------------------------
    def size_adopted(self, name: str, a: Allocation) -> None:
        """Size a stopped adopted domain's definition at ``a``, maxima included."""
        dom = self._domain(name)
        try:
            if dom.isActive():
                raise HypervisorError(f"{name} is running: its definition is not changed")
            self._set_size(dom, a.vcpus, a.vcpus, a.memory_mib * 1024, a.memory_mib * 1024)
            if a.iops:
                self._set_iotune(dom, {"total_iops_sec": a.iops}, _CONFIG)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot size domain {name}: {exc}") from exc

    def restore_adopted(self, name: str, original: dict[str, Any]) -> bool:
        """Put back the size a stopped domain had before it was adopted; False
        when it runs (started by its user meanwhile: left as it is)."""
        dom = self._domain(name)
        try:
            if dom.isActive():
                return False
            self._set_size(
                dom,
                int(original["vcpus"]),
                int(original["max_vcpus"]),
                int(original["memory_kib"]),
                int(original["max_memory_kib"]),
            )
            tune = original.get("iotune") or {}
            current = self._iotune(dom)
            if tune or any(v for v in current.values() if isinstance(v, int)):
                params = {k: 0 for k, v in current.items() if isinstance(v, int)}
                params.update({k: int(v) for k, v in tune.items() if v.strip().isdigit()})
                self._set_iotune(dom, params, _CONFIG)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot put back the size of domain {name}: {exc}") from exc
        return True

    def resize_adopted(self, name: str, a: Allocation) -> ResizeMode:
        """A running adopted domain given ``a``: live where libvirt can, else its
        definition and a restart (as vmshadow's own VMs); returns how."""
        mode = self.resize_mode(name, a)
        dom = self._domain(name)
        try:
            if mode is ResizeMode.LIVE:
                self._resize_live(dom, name, a)
                return mode
            size = self._config_size(dom)
            kib = a.memory_mib * 1024
            most_kib = max(kib, size.max_memory_mib * 1024)
            self._set_size(dom, a.vcpus, max(a.vcpus, size.max_vcpus), kib, most_kib)
            if a.iops:
                self._set_iotune(dom, {"total_iops_sec": a.iops}, _CONFIG)
            if mode is ResizeMode.RESTART:
                self._stop(dom, name)
                dom.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot resize domain {name} ({mode.value}): {exc}") from exc
        return mode

    # -- helpers -----------------------------------------------------------------------
    def _domain(self, name: str) -> Any:
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(f"no domain named {name} on this host")
        return dom

    def _set_metadata(self, name: str, xml: str | None, key: str | None, ns: str) -> None:
        dom = self._domain(name)
        try:
            flags = _CONFIG | (_LIVE if dom.isActive() else 0)
            dom.setMetadata(_ELEMENT, xml, key, ns, flags)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot write the metadata of domain {name}: {exc}") from exc

    def _config_size(self, dom: Any) -> LiveSize:
        return configured_size(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

    def _set_size(self, dom: Any, vcpus: int, max_vcpus: int, kib: int, max_kib: int) -> None:
        """The persistent size, each maximum moved on the side that keeps current <= maximum."""
        now = self._config_size(dom)
        vmax = libvirt.VIR_DOMAIN_VCPU_MAXIMUM | _CONFIG
        if max_vcpus >= now.max_vcpus:
            dom.setVcpusFlags(max_vcpus, vmax)
            dom.setVcpusFlags(vcpus, _CONFIG)
        else:
            dom.setVcpusFlags(vcpus, _CONFIG)
            dom.setVcpusFlags(max_vcpus, vmax)
        mmax = libvirt.VIR_DOMAIN_MEM_MAXIMUM | _CONFIG
        if max_kib >= now.max_memory_mib * 1024:
            dom.setMemoryFlags(max_kib, mmax)
            dom.setMemoryFlags(kib, _CONFIG)
        else:
            dom.setMemoryFlags(kib, _CONFIG)
            dom.setMemoryFlags(max_kib, mmax)

    def _iotune(self, dom: Any) -> dict[str, Any]:
        dev = _last_disk(dom)
        if dev is None:
            return {}
        return dict(dom.blockIoTune(dev, _CONFIG))

    def _set_iotune(self, dom: Any, params: dict[str, int], flags: int) -> None:
        dev = _last_disk(dom)
        if dev is not None and params:
            dom.setBlockIoTune(dev, params, flags)


def _last_disk(dom: Any) -> str | None:
    """The disk an IOPS cap goes on: the domain's last hard disk (as for vmshadow's VMs)."""
    targets = disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return targets[-1] if targets else None


def _element(dom: Any, ns: str, active: bool) -> str | None:
    """One metadata element of the persistent definition (or, for a running
    domain with none there, of the live one); None when it has none."""
    for flags in (_CONFIG, _LIVE) if active else (_CONFIG,):
        try:
            return str(dom.metadata(_ELEMENT, ns, flags))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                raise
    return None
