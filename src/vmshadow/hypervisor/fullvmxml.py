"""libvirt domain XML for the full VM a transition launches, built without libvirt.

The full VM is persistent (it outlives vmshadow) and is defined at
``shadowing``, long before it starts, so its definition can follow the
prediction. Memory is given as a maximum (``<memory>``) with the allocation
as ``<currentMemory>``, and vCPUs as a maximum with ``current``: the balloon
and vCPU hot-plug can then change a running VM within those maxima.

No ``<interface>`` yet: nothing in vmshadow needs one, and the built-in image
configures no network; a user image that needs one is a later feature.

The helpers at the end read and change the XML libvirt returns for a defined
VM (sizes, IOPS caps), also without libvirt, so they are unit-tested too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import AGENT_CHANNEL, DEFAULT_KERNEL_ARGS
from vmshadow.domain.vm import BuiltinImage, FullVmSpec
from vmshadow.hypervisor.domainxml import (
    METADATA_KEY,
    METADATA_NS,
    ShadowMetadata,
    _sub,
    backing_chain,
    metadata_element,
)
from vmshadow.hypervisor.support import LiveSize

ROOT_DISK = "root.qcow2"
SCRATCH_DISK = "scratch.img"
CONSOLE_LOG = "console.log"
# Written first into a VM's folder, with the transition's id: what says the
# folder (and so what is in it) is vmshadow's to reuse and to delete.
OWNER_FILE = ".vmshadow-transition"
# The built-in image's kernel arguments are the shadow's: the same OS both ways.
KERNEL_ARGS = DEFAULT_KERNEL_ARGS


def full_vm_domain_xml(spec: FullVmSpec) -> str:
    """The persistent domain XML of one transition's full VM."""
    ET.register_namespace(METADATA_KEY, METADATA_NS)
    a = spec.allocation
    dom = ET.Element("domain", type=spec.accelerator.libvirt_domain_type)
    _sub(dom, "name", spec.name)
    meta = _sub(dom, "metadata")
    meta.append(
        metadata_element(
            ShadowMetadata(
                role="vm",
                shadow_id=spec.name,
                run_dir=str(spec.vm_dir),
                created_at=spec.created_at,
                transition_id=spec.transition_id,
                owner=spec.owner,
            )
        )
    )
    _sub(dom, "memory", str(spec.max_memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(a.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.max_vcpus), placement="static", current=str(a.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    if isinstance(spec.image, BuiltinImage):
        _sub(os_el, "kernel", str(spec.image.kernel))
        _sub(os_el, "initrd", str(spec.image.initrd))
        _sub(os_el, "cmdline", " ".join(KERNEL_ARGS))
    else:
        _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    # No <interface>: nothing in vmshadow talks to the VM over a network yet
    # (the agent uses the channel below), and the built-in image configures
    # no network stack, so a NIC would only be an unguarded way in.
    builtin = isinstance(spec.image, BuiltinImage)
    # The IOPS cap goes on the workload's disk only (see workload_disk): on the
    # built-in image's root disk a small cap starved the boot (10 IOPS: no agent
    # within a minute), and the shadow never measured the root disk's I/O anyway.
    if isinstance(spec.image, BuiltinImage):
        chain: tuple[tuple[Path, str], ...] = ((spec.image.base, "qcow2"),)
    else:
        chain = ((spec.image.path, spec.image.format), *spec.image.backing)
    root = _disk(devices, str(spec.vm_dir / ROOT_DISK), "qcow2", "vda", None if builtin else a.iops)
    backing_chain(root, chain)
    if builtin:
        _disk(devices, str(spec.vm_dir / SCRATCH_DISK), "raw", "vdb", a.iops)
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "source", mode="bind")
        _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(spec.vm_dir / CONSOLE_LOG))
    _sub(serial, "target", port="0")
    _sub(devices, "controller", type="usb", model="none")
    balloon = _sub(devices, "memballoon", model="virtio")
    _sub(balloon, "stats", period="1")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "rate", bytes="4096", period="1000")
    _sub(rng, "backend", model="random").text = "/dev/urandom"
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def _disk(devices: ET.Element, path: str, fmt: str, target: str, iops: int | None) -> ET.Element:
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt, cache="none", io="native")
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=target, bus="virtio")
    if iops:
        # The recommendation is for the disk the workload uses, which is what
        # the shadow's I/O phase measured (its scratch disk).
        tune = _sub(disk, "iotune")
        _sub(tune, "total_iops_sec", str(iops))
    return disk


# -- reading and changing libvirt's own XML of a defined VM -----------------------------
def with_uuid(xml: str, uuid: str) -> str:
    root = ET.fromstring(xml)  # noqa: S314 - our own XML
    ET.SubElement(root, "uuid").text = uuid
    return ET.tostring(root, encoding="unicode")


def disk_targets(xml: str) -> list[str]:
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    return [t.get("dev", "") for t in root.findall("devices/disk/target") if t.get("dev")]


def workload_disk(xml: str) -> str | None:
    """The disk the IOPS cap belongs on: the last one (the built-in image's
    scratch disk ``vdb`` after its root disk; a user image's only disk)."""
    targets = disk_targets(xml)
    return targets[-1] if targets else None


def scratch_file(xml: str) -> Path | None:
    """The built-in image's scratch disk file, if the definition has one."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    for source in root.findall("devices/disk/source"):
        path = source.get("file")
        if path and Path(path).name == SCRATCH_DISK:
            return Path(path)
    return None


def iops_of(xml: str) -> int | None:
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    disks = root.findall("devices/disk")
    text = disks[-1].findtext("iotune/total_iops_sec") if disks else None
    return int(text) if text and int(text) > 0 else None


def configured_size(xml: str) -> LiveSize:
    """The size in a definition (libvirt writes memory in KiB)."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    vcpu = root.find("vcpu")
    max_vcpus = int(vcpu.text or 1) if vcpu is not None else 1
    vcpus = int(vcpu.get("current", max_vcpus)) if vcpu is not None else 1
    max_mem = int(root.findtext("memory") or 0) // 1024
    mem = int(root.findtext("currentMemory") or 0) // 1024 or max_mem
    return LiveSize(vcpus, max_vcpus, mem, max_mem, iops_of(xml))


def with_allocation(xml: str, a: Allocation, *, raise_maxima: bool = False) -> str:
    """The definition with a new allocation; with ``raise_maxima``, maxima grow to fit."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    kib = a.memory_mib * 1024
    mem = root.find("memory")
    if raise_maxima and mem is not None and int(mem.text or 0) < kib:
        mem.text = str(kib)
        mem.set("unit", "KiB")
    cur = root.find("currentMemory")
    if cur is None:
        cur = ET.SubElement(root, "currentMemory")
    cur.text = str(kib)
    cur.set("unit", "KiB")
    vcpu = root.find("vcpu")
    if vcpu is not None:
        if raise_maxima:
            vcpu.text = str(max(a.vcpus, int(vcpu.text or 1)))
        vcpu.set("current", str(a.vcpus))
    disks = root.findall("devices/disk")
    for disk in disks:
        tune = disk.find("iotune")
        if a.iops and disk is disks[-1]:  # the workload's disk only
            if tune is None:
                tune = ET.SubElement(disk, "iotune")
            total = tune.find("total_iops_sec")
            if total is None:
                total = ET.SubElement(tune, "total_iops_sec")
            total.text = str(a.iops)
        elif tune is not None:
            disk.remove(tune)
    return ET.tostring(root, encoding="unicode")
