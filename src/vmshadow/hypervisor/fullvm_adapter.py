"""The pending and launched full VM through libvirt: define, start, resize, remove
(pausing a pre-booted one and resuming it is ``fullvm_pause``).

A mixin of ``LibvirtHypervisor`` (it uses its connection). Every call is safe
to repeat after a crash: define updates the same named domain of the same
transition, start does nothing to a running VM, remove forgets a missing one.
What may change live is decided by the table in ``hypervisor.support``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, cast

import libvirt

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError, HypervisorError, VmshadowError
from vmshadow.domain.vm import BuiltinImage, DiskImage, FullVmSpec
from vmshadow.hypervisor.disks import create_overlay, create_scratch
from vmshadow.hypervisor.domainxml import (
    METADATA_NS,
    ShadowMetadata,
    parse_metadata,
    parse_metadata_element,
)
from vmshadow.hypervisor.filemodes import private_disk
from vmshadow.hypervisor.fullvm_pause import PauseMixin
from vmshadow.hypervisor.fullvm_resize import ResizeMixin, _active
from vmshadow.hypervisor.fullvmxml import (
    builtin_disks,
    configured_size,
    full_vm_domain_xml,
    image_of,
    network_of,
    scratch_file,
    user_network_port,
    with_allocation,
    with_user_network_port,
    with_uuid,
)
from vmshadow.hypervisor.port import AgentTransport, StorageHost
from vmshadow.hypervisor.support import Can, support_for
from vmshadow.hypervisor.vmfolder import claim_vm_dir, remove_vm_dir
from vmshadow.hypervisor.vmvolumes import (
    free_loopback_port,
    loopback_port_free,
    prepare_builtin_root,
    prepare_store_disks,
    refresh_pool_of,
    remove_store_disks,
)

SCRATCH_MIB = 1024
SHUTDOWN_GRACE_S = 10.0
AGENT_HELLO_S = 3.0  # the agent greets at once on connect; longer means someone else holds it
AGENT_BYE_S = 5.0
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


class FullVmMixin(ResizeMixin, PauseMixin):
    _conn: Any

    # Provided by LibvirtHypervisor.
    def _lookup(self, name: str) -> Any | None:
        raise NotImplementedError

    def open_agent_channel(self, name: str) -> AgentTransport:
        raise NotImplementedError

    @property
    def can(self) -> Can:
        """This connection's capability check, e.g. ``hv.can("vcpu_hotplug")``."""
        cached: Can | None = self.__dict__.get("_can")
        if cached is None:
            try:
                cached = support_for(self._conn.getType(), int(self._conn.getVersion()))
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"cannot read the hypervisor's version: {exc}") from exc
            self.__dict__["_can"] = cached
        return cached

    # -- define and start ------------------------------------------------------------------
    def define_full_vm(self, spec: FullVmSpec) -> None:
        """Define (or redefine, while not running) the VM of one transition."""
        dom = self._lookup(spec.name)
        uuid = None
        if dom is not None:
            meta = _meta(dom)
            if meta is None or meta.role != "vm" or meta.transition_id != spec.transition_id:
                whose = (
                    "not made by vmshadow"
                    if meta is None or meta.role != "vm"
                    else f"the VM of transition {meta.transition_id}"
                )
                raise HypervisorError(
                    f"a domain named {spec.name} already exists ({whose}) and does not belong "
                    f"to transition {spec.transition_id}: choose another name"
                )
            if _active(dom, spec.name):
                raise HypervisorError(f"{spec.name} is running: its definition is not changed")
            uuid = dom.UUIDString()
        if isinstance(spec.image, DiskImage) and spec.guest is not None:
            spec = self._with_ssh_port(spec, dom)
        made_dir = False
        made: list[Path] = []
        try:
            made_dir = claim_vm_dir(spec.vm_dir, spec.transition_id)
            if isinstance(spec.image, BuiltinImage):
                root, _scratch = builtin_disks(spec)
                if spec.volumes is not None:
                    made.extend(prepare_builtin_root(cast(StorageHost, self), spec, root))
                elif not root.exists():
                    made.append(root)
                    create_overlay(spec.image.base, root, backing_format="qcow2")
                    private_disk(root)
            else:
                made.extend(prepare_store_disks(cast(StorageHost, self), spec))
            xml = full_vm_domain_xml(spec)
            if uuid is not None:
                # The same domain, redefined: without its UUID libvirt sees a name clash.
                xml = with_uuid(xml, uuid)
            self._conn.defineXML(xml)
        except (libvirt.libvirtError, OSError, VmshadowError) as exc:
            for p in made:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.storageVolLookupByPath(str(p)).delete(0)
                p.unlink(missing_ok=True)
            if made_dir:
                remove_vm_dir(spec.vm_dir, spec.transition_id)
            if isinstance(exc, VmshadowError):
                raise
            raise HypervisorError(f"cannot define VM {spec.name}: {exc}") from exc

    def _with_ssh_port(self, spec: FullVmSpec, dom: Any | None) -> FullVmSpec:
        """User networking: keep the port a definition has, or take a free one."""
        if spec.guest is None or spec.guest.network.kind != "user" or spec.ssh_port:
            return spec
        port = None
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                port = user_network_port(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return dataclasses.replace(spec, ssh_port=port or free_loopback_port())

    def set_full_vm_allocation(self, name: str, allocation: Allocation) -> None:
        """Change the size of a defined, stopped VM within its maxima."""
        dom = self._owned(name)
        if _active(dom, name):
            raise HypervisorError(f"{name} is running: resize it instead")
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read VM {name}: {exc}") from exc
        size = configured_size(xml)
        if allocation.vcpus > size.max_vcpus:
            raise ConfigError(
                "vcpus", f"{allocation.vcpus} is above {name}'s maximum of {size.max_vcpus}"
            )
        if allocation.memory_mib > size.max_memory_mib:
            raise ConfigError(
                "memory_mib",
                f"{allocation.memory_mib} MiB is above {name}'s maximum of "
                f"{size.max_memory_mib} MiB",
            )
        self._define(name, with_allocation(xml, allocation))

    def start_full_vm(self, name: str) -> bool:
        """Start the defined VM; False if it was already running."""
        dom = self._owned(name)
        made: Path | None = None
        try:
            if dom.isActive():
                return False
            # The built-in image's scratch disk is allocated here, not at define:
            # a pending VM waiting for its user's decision holds no disk space
            # (a hundred pending launches held 100 GiB and filled the host).
            inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            port = user_network_port(inactive)
            if port is not None and not loopback_port_free(port):
                # Taken since define (the VM waited for a decision): QEMU would
                # fail to bind it, so the forward moves to a free port.
                dom = self._conn.defineXML(with_user_network_port(inactive, free_loopback_port()))
            scratch = scratch_file(inactive)
            if scratch is not None and not scratch.exists():
                with contextlib.suppress(FileExistsError):  # a second start, this instant
                    create_scratch(scratch, SCRATCH_MIB)
                    made = scratch
                    refresh_pool_of(self._conn, scratch)
            dom.create()
        except libvirt.libvirtError as exc:
            # Two starts at once (a controller that stalled past its lease and
            # the one that took over): libvirt lets one win; the other is a no-op.
            with contextlib.suppress(libvirt.libvirtError):
                if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and dom.isActive():
                    return False
            if made is not None:
                made.unlink(missing_ok=True)
            raise HypervisorError(f"cannot start VM {name}: {exc}") from exc
        return True

    # -- remove and inspect -----------------------------------------------------------------
    def remove_full_vm(self, name: str) -> bool:
        """Destroy, undefine and delete the disks of a VM vmshadow made; False if absent."""
        dom = self._lookup(name)
        if dom is None:
            return False
        meta = _meta(dom)
        if meta is None or meta.role != "vm":
            raise HypervisorError(f"{name} is not a VM vmshadow made: refusing to remove it")
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        )
        if self.can("undefine_nvram_and_checkpoints"):
            flags |= (
                libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            )
        xml = ""
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise HypervisorError(f"cannot remove VM {name}: {exc}") from exc
        if xml and meta.transition_id:
            remove_store_disks(self._conn, xml, name, meta.transition_id)
        if meta.run_dir and meta.transition_id:
            remove_vm_dir(Path(meta.run_dir), meta.transition_id)
        return True

    def list_managed_vms(self) -> list[tuple[str, ShadowMetadata]]:
        """Every full VM vmshadow defined (metadata role ``vm``), running or not."""
        try:
            domains = self._conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list domains: {exc}") from exc
        found = []
        for dom in domains:
            meta = _meta(dom)
            if meta is not None and meta.role == "vm":
                with contextlib.suppress(libvirt.libvirtError):  # vanished while we looked
                    found.append((dom.name(), meta))
        return found

    def domain_names(self) -> set[str]:
        """The names of every domain on the host, ours or not (no metadata read:
        a domain's name comes with the list, its metadata is a call each)."""
        try:
            return {dom.name() for dom in self._conn.listAllDomains(0)}
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list domains: {exc}") from exc

    def full_vm_info(self, name: str) -> dict[str, object] | None:
        """Size and state of a domain (any, though only ours carry vm_dir); None if absent."""
        dom = self._lookup(name)
        if dom is None:
            return None
        try:
            state = int(dom.state()[0])
            running = bool(dom.isActive())
            xml = dom.XMLDesc(0)
            size = self._live_size(dom, name) if running else configured_size(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read VM {name}: {exc}") from exc
        meta = _meta(dom)
        return {
            "name": name,
            "running": running,
            "state": _STATE_NAMES.get(state, "unknown"),
            "vcpus": size.vcpus,
            "max_vcpus": size.max_vcpus,
            "memory_mib": size.memory_mib,
            "max_memory_mib": size.max_memory_mib,
            "iops": size.iops,
            "vm_dir": meta.run_dir if meta else None,
            "transition_id": meta.transition_id if meta else None,
            "image": image_of(xml),
            "network": network_of(xml),
            "ssh_port": user_network_port(xml),
        }

    def _owned(self, name: str) -> Any:
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(f"no VM named {name} on this host")
        meta = _meta(dom)
        # "adopted": a user's domain with a request (``hypervisor.adoption``): it
        # is started and resized like vmshadow's own, never removed.
        if meta is None or meta.role not in ("vm", "adopted"):
            raise HypervisorError(f"{name} is not a VM vmshadow manages")
        return dom

    def _define(self, name: str, xml: str) -> None:
        try:
            self._conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot change the definition of VM {name}: {exc}") from exc


def _meta(dom: Any) -> ShadowMetadata | None:
    # Only the metadata element: formatting and parsing each domain's whole
    # XML made listing 1,000 VMs take 0.3 s, and placement lists them per launch.
    try:
        return parse_metadata_element(
            dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None  # not ours
    try:  # a driver without the metadata call: read it from the whole XML
        return parse_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except libvirt.libvirtError:
        return None
