"""The pending and launched full VM through libvirt: define, start, resize, remove.

A mixin of ``LibvirtHypervisor`` (it uses its connection). Every call is safe
to repeat after a crash: define updates the same named domain of the same
transition, start does nothing to a running VM, remove forgets a missing one.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.vm import BuiltinImage, FullVmSpec, ResizeMode
from vmshadow.hypervisor.domainxml import ShadowMetadata, parse_metadata
from vmshadow.hypervisor.fullvmxml import ROOT_DISK, SCRATCH_DISK, full_vm_domain_xml
from vmshadow.shadow.disks import create_overlay, create_scratch

SCRATCH_MIB = 1024
SHUTDOWN_GRACE_S = 10.0
_AFFECT_BOTH = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG

# What can change on a running VM here, in one place (as virtinst's support.py
# does): growing vCPUs up to the maximum is a hot-plug; shrinking them would
# need the guest to give CPUs back, which a plain guest does not do, so it
# takes a restart. Memory moves freely below the maximum through the balloon.
LIVE_CHANGES = {
    "vcpus_up_to_max": True,
    "vcpus_down": False,
    "memory_up_to_max": True,
    "memory_down": True,
    "iotune": True,
}


class FullVmMixin:
    _conn: Any

    def _lookup(self, name: str) -> Any | None:  # provided by LibvirtHypervisor
        raise NotImplementedError

    # -- define and start ------------------------------------------------------------------
    def define_full_vm(self, spec: FullVmSpec) -> None:
        """Define (or redefine, while not running) the VM of one transition."""
        dom = self._lookup(spec.name)
        uuid = None
        if dom is not None:
            meta = _meta(dom)
            if meta is None or meta.role != "vm" or meta.transition_id != spec.transition_id:
                raise HypervisorError(
                    f"a domain named {spec.name} already exists and does not belong to "
                    f"transition {spec.transition_id}"
                )
            if dom.isActive():
                raise HypervisorError(f"{spec.name} is running: its definition is not changed")
            uuid = dom.UUIDString()
        made_dir = not spec.vm_dir.exists()
        made: list[Path] = []
        try:
            spec.vm_dir.mkdir(parents=True, exist_ok=True)
            spec.vm_dir.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach the disks
            root = spec.vm_dir / ROOT_DISK
            if not root.exists():
                base = spec.image.base if isinstance(spec.image, BuiltinImage) else spec.image.path
                fmt = "qcow2" if isinstance(spec.image, BuiltinImage) else spec.image.format
                create_overlay(base, root, backing_format=fmt)
                made.append(root)
            scratch = spec.vm_dir / SCRATCH_DISK
            if isinstance(spec.image, BuiltinImage) and not scratch.exists():
                create_scratch(scratch, SCRATCH_MIB)
                made.append(scratch)
            xml = full_vm_domain_xml(spec)
            if uuid is not None:
                root_el = ET.fromstring(xml)  # noqa: S314 - our own XML
                ET.SubElement(root_el, "uuid").text = uuid
                xml = ET.tostring(root_el, encoding="unicode")
            self._conn.defineXML(xml)
        except (libvirt.libvirtError, OSError, HypervisorError) as exc:
            for p in made:
                p.unlink(missing_ok=True)
            if made_dir:
                shutil.rmtree(spec.vm_dir, ignore_errors=True)
            if isinstance(exc, HypervisorError):
                raise
            raise HypervisorError(f"cannot define VM {spec.name}: {exc}") from exc

    def start_full_vm(self, name: str) -> bool:
        """Start the defined VM; False if it was already running."""
        dom = self._owned(name)
        try:
            if dom.isActive():
                return False
            dom.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot start VM {name}: {exc}") from exc
        return True

    # -- resize ----------------------------------------------------------------------------
    def resize_mode(self, name: str, allocation: Allocation) -> ResizeMode:
        dom = self._owned(name)
        try:
            if not dom.isActive():
                return ResizeMode.OFFLINE
            max_vcpus = int(dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM))
            cur_vcpus = int(dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE))
            max_mem_mib = int(dom.maxMemory()) // 1024
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read the size of VM {name}: {exc}") from exc
        if allocation.vcpus > max_vcpus or allocation.memory_mib > max_mem_mib:
            return ResizeMode.RESTART
        if allocation.vcpus < cur_vcpus and not LIVE_CHANGES["vcpus_down"]:
            return ResizeMode.RESTART
        return ResizeMode.LIVE

    def apply_resize(self, name: str, allocation: Allocation) -> ResizeMode:
        """Give the VM ``allocation``, live where possible; returns how it was done."""
        mode = self.resize_mode(name, allocation)
        dom = self._owned(name)
        try:
            if mode is ResizeMode.LIVE:
                cur = int(dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE))
                if allocation.vcpus != cur:
                    dom.setVcpusFlags(allocation.vcpus, _AFFECT_BOTH)
                dom.setMemoryFlags(allocation.memory_mib * 1024, _AFFECT_BOTH)
                tune = {"total_iops_sec": allocation.iops or 0}
                for dev in _disk_targets(dom.XMLDesc(0)):
                    # libvirt takes LIVE and CONFIG separately for I/O tuning.
                    dom.setBlockIoTune(dev, tune, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                    dom.setBlockIoTune(dev, tune, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                return mode
            xml = _with_allocation(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE),
                allocation,
            )
            self._conn.defineXML(xml)
            if mode is ResizeMode.RESTART:
                self._stop(dom)
                dom.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot resize VM {name} ({mode.value}): {exc}") from exc
        return mode

    def _stop(self, dom: Any) -> None:
        """Ask the guest to shut down, then pull the plug after a short grace."""
        with contextlib.suppress(libvirt.libvirtError):  # no ACPI in the guest: destroy below
            dom.shutdown()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while time.monotonic() < deadline and dom.isActive():
            time.sleep(0.2)
        if dom.isActive():
            dom.destroy()

    # -- remove and inspect -----------------------------------------------------------------
    def remove_full_vm(self, name: str) -> bool:
        """Destroy, undefine and delete the disks of a VM vmshadow made; False if absent."""
        dom = self._lookup(name)
        if dom is None:
            return False
        meta = _meta(dom)
        if meta is None or meta.role != "vm":
            raise HypervisorError(f"{name} is not a VM vmshadow made: refusing to remove it")
        try:
            if dom.isActive():
                dom.destroy()
            # No NVRAM flag: these VMs boot with SeaBIOS (and the test driver refuses it).
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise HypervisorError(f"cannot remove VM {name}: {exc}") from exc
        if meta.run_dir:
            shutil.rmtree(meta.run_dir, ignore_errors=True)
        return True

    def list_managed_vms(self) -> list[tuple[str, ShadowMetadata]]:
        try:
            domains = self._conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list domains: {exc}") from exc
        found = []
        for dom in domains:
            meta = _meta(dom)
            if meta is not None and meta.role == "vm":
                found.append((dom.name(), meta))
        return found

    def full_vm_info(self, name: str) -> dict[str, object] | None:
        dom = self._lookup(name)
        if dom is None:
            return None
        try:
            running = bool(dom.isActive())
            root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirt's own output
            vcpu = root.find("vcpu")
            max_vcpus = int(vcpu.text or 1) if vcpu is not None else 1
            vcpus = int(vcpu.get("current", max_vcpus)) if vcpu is not None else 1
            max_mem = int(root.findtext("memory") or 0) // 1024
            mem = int(root.findtext("currentMemory") or 0) // 1024 or max_mem
            if running:
                vcpus = int(dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE))
                mem = int(dom.info()[2]) // 1024
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read VM {name}: {exc}") from exc
        iops_text = root.findtext("devices/disk/iotune/total_iops_sec")
        meta = _meta(dom)
        return {
            "name": name,
            "running": running,
            "vcpus": vcpus,
            "max_vcpus": max_vcpus,
            "memory_mib": mem,
            "max_memory_mib": max_mem,
            "iops": int(iops_text) if iops_text and int(iops_text) > 0 else None,
            "vm_dir": meta.run_dir if meta else None,
            "transition_id": meta.transition_id if meta else None,
        }

    def _owned(self, name: str) -> Any:
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(f"no VM named {name} on this host")
        meta = _meta(dom)
        if meta is None or meta.role != "vm":
            raise HypervisorError(f"{name} is not a VM vmshadow manages")
        return dom


def _meta(dom: Any) -> ShadowMetadata | None:
    try:
        return parse_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except libvirt.libvirtError:
        return None


def _disk_targets(xml: str) -> list[str]:
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    return [t.get("dev", "") for t in root.findall("devices/disk/target") if t.get("dev")]


def _with_allocation(xml: str, a: Allocation) -> str:
    """The persistent definition with a new allocation, raising maxima as needed."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    mem = root.find("memory")
    cur = root.find("currentMemory")
    kib = a.memory_mib * 1024
    # libvirt reports memory in KiB in the XML it returns.
    if mem is not None and int(mem.text or 0) < kib:
        mem.text = str(kib)
        mem.set("unit", "KiB")
    if cur is not None:
        cur.text = str(kib)
        cur.set("unit", "KiB")
    vcpu = root.find("vcpu")
    if vcpu is not None:
        vcpu.text = str(max(a.vcpus, int(vcpu.text or 1)))
        vcpu.set("current", str(a.vcpus))
    for disk in root.findall("devices/disk"):
        tune = disk.find("iotune")
        if a.iops:
            if tune is None:
                tune = ET.SubElement(disk, "iotune")
            total = tune.find("total_iops_sec")
            if total is None:
                total = ET.SubElement(tune, "total_iops_sec")
            total.text = str(a.iops)
        elif tune is not None:
            disk.remove(tune)
    return ET.tostring(root, encoding="unicode")
