"""libvirt domain XML for the full VM a transition launches, built without libvirt.

The full VM is persistent (it outlives vmshadow) and is defined at
``shadowing``, long before it starts, so its definition can follow the
prediction. Memory is given as a maximum (``<memory>``) with the allocation
as ``<currentMemory>``, and vCPUs as a maximum with ``current``: the balloon
and vCPU hot-plug can then change a running VM within those maxima.

A VM from a store image is what virt-install makes of a cloud image: its
root disk a volume of vmshadow's disk pool (a qcow2 overlay of the image), a
cloud-init NoCloud seed on a CD-ROM, a NIC (a libvirt network, a bridge, or
QEMU's user networking with SSH forwarded from 127.0.0.1 only), a serial
console for ``virsh console``, and a qemu-guest-agent channel. The built-in
image's VM has no NIC: its OS configures no network, so one would only be an
unguarded way in.

The helpers at the end read and change the XML libvirt returns for a defined
VM (sizes, IOPS caps), also without libvirt, so they are unit-tested too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import AGENT_CHANNEL, DEFAULT_KERNEL_ARGS
from vmshadow.domain.vm import BuiltinImage, FullVmSpec, VmVolumes
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
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
USER_NETDEV = "vmshadow-user0"
# The user-networking NIC's PCI slot: without an explicit one QEMU takes slot 2
# and the first disk, which libvirt placed there, fails to start.
USER_NIC_PCI_SLOT = "0x9"
# TCG's translation cache defaults to 1 GiB and fills up: a 512 MiB guest's
# QEMU reached 1.37 GiB RSS; 128 MiB held it near 510 MiB with no slowdown.
TCG_TB_CACHE_MIB = "128"
# Any prefix bound to the URI works for libvirt; this one keeps XML readable.
ET.register_namespace("qemu", QEMU_NS)


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
    if spec.accelerator.libvirt_domain_type == "qemu" and not isinstance(spec.image, BuiltinImage):
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", TCG_TB_CACHE_MIB, unit="MiB")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    if isinstance(spec.image, BuiltinImage):
        _builtin_devices(devices, spec)
    else:
        _store_image_devices(dom, devices, spec)
    _sub(devices, "controller", type="usb", model="none")
    balloon = _sub(devices, "memballoon", model="virtio")
    _sub(balloon, "stats", period="1")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "rate", bytes="4096", period="1000")
    _sub(rng, "backend", model="random").text = "/dev/urandom"
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def builtin_disks(spec: FullVmSpec) -> tuple[Path, Path]:
    """The built-in image's root and scratch disks: volumes of the disk pool, or
    (a spec without one, as the benches and older tests make) the VM's folder."""
    vols = spec.volumes
    if vols is None:
        return spec.vm_dir / ROOT_DISK, spec.vm_dir / SCRATCH_DISK
    return (
        vols.directory / VmVolumes.root_name(spec.name, spec.transition_id),
        vols.directory / VmVolumes.scratch_name(spec.name, spec.transition_id),
    )


def _builtin_devices(devices: ET.Element, spec: FullVmSpec) -> None:
    assert isinstance(spec.image, BuiltinImage)
    a = spec.allocation
    root_path, scratch_path = builtin_disks(spec)
    # The IOPS cap goes on the workload's disk only (see workload_disk): on the
    # built-in image's root disk a small cap starved the boot (10 IOPS: no agent
    # within a minute), and the shadow never measured the root disk's I/O anyway.
    root = _disk(devices, str(root_path), "qcow2", "vda", None)
    backing_chain(root, ((spec.image.base, "qcow2"),))
    _disk(devices, str(scratch_path), "raw", "vdb", a)
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "source", mode="bind")
    _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(spec.vm_dir / CONSOLE_LOG))
    _sub(serial, "target", port="0")


def store_volumes(spec: FullVmSpec) -> tuple[Path, Path]:
    """The root disk and seed volume paths of a store image's VM."""
    vols = spec.volumes
    if vols is None or spec.guest is None:
        raise ValueError(f"{spec.name}: a store image's VM needs its volumes and guest set-up")
    return (
        vols.directory / VmVolumes.root_name(spec.name, spec.transition_id),
        vols.directory / VmVolumes.seed_name(spec.name, spec.transition_id),
    )


def _store_image_devices(dom: ET.Element, devices: ET.Element, spec: FullVmSpec) -> None:
    assert not isinstance(spec.image, BuiltinImage) and spec.guest is not None
    root_path, seed_path = store_volumes(spec)
    root = _disk(devices, str(root_path), "qcow2", "vda", spec.allocation)
    backing_chain(root, ((spec.image.path, spec.image.format), *spec.image.backing))
    seed = _sub(devices, "disk", type="file", device="cdrom")
    _sub(seed, "driver", name="qemu", type="raw")
    _sub(seed, "source", file=str(seed_path))
    _sub(seed, "target", dev="hdc", bus="ide")
    _sub(seed, "readonly")
    net = spec.guest.network
    if net.kind in ("network", "bridge"):
        iface = _sub(devices, "interface", type=net.kind)
        source = _sub(iface, "source")
        source.set(net.kind, net.name)
        _sub(iface, "model", type="virtio")
    elif net.kind == "user":
        if spec.ssh_port is None:
            raise ValueError(f"{spec.name}: user networking needs its loopback SSH port")
        _user_network(dom, spec.ssh_port)
    # A pty for `virsh console`, logged to a file for vmshadow's own error messages.
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(spec.vm_dir / CONSOLE_LOG), append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "source", mode="bind")
    _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)


def _user_network(dom: ET.Element, port: int) -> None:
    """QEMU's user networking, with only 127.0.0.1:PORT forwarded to the guest's SSH.

    libvirt 9.0 has no loopback port forward of its own (its passt backend is
    refused), hence QEMU arguments. ``restrict=on`` keeps the guest from
    reaching out; the forward still works. QEMU binds 127.0.0.1 itself, so the
    VM is reachable from this host and from nowhere else.
    """
    cmd = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
    netdev = f"user,id={USER_NETDEV},restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
    device = f"virtio-net-pci,netdev={USER_NETDEV},bus=pci.0,addr={USER_NIC_PCI_SLOT}"
    for arg in ("-netdev", netdev, "-device", device):
        ET.SubElement(cmd, f"{{{QEMU_NS}}}arg", value=arg)


def user_network_port(xml: str) -> int | None:
    """The loopback SSH port of a VM on user networking, from its definition."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    for arg in root.iter(f"{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        if f"id={USER_NETDEV}," in value:
            for part in value.split(","):
                if part.startswith("hostfwd=tcp:127.0.0.1:"):
                    return int(part.split(":")[2].split("-")[0])
    return None


def network_of(xml: str) -> str:
    """The VM's NIC as ``--network`` names it: NAME, bridge:BR, user or none."""
    if user_network_port(xml) is not None:
        return "user"
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    iface = root.find("devices/interface")
    if iface is None:
        return "none"
    source = iface.find("source")
    kind = iface.get("type", "")
    name = source.get(kind, "") if source is not None else ""
    return f"bridge:{name}" if kind == "bridge" else name or kind


def image_of(xml: str) -> str | None:
    """``builtin``, or the file name of the store image behind the root disk."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    if root.find("os/kernel") is not None:
        return "builtin"
    disks = _hard_disks(root)
    source = disks[0].find("backingStore/source") if disks else None
    path = source.get("file") if source is not None else None
    return Path(path).name if path else None


def with_user_network_port(xml: str, port: int) -> str:
    """The definition with its loopback SSH forward moved to ``port``."""
    old = user_network_port(xml)
    if old is None:
        return xml
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    for arg in root.iter(f"{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        if f"id={USER_NETDEV}," in value:
            arg.set("value", value.replace(f"127.0.0.1:{old}-", f"127.0.0.1:{port}-"))
    return ET.tostring(root, encoding="unicode")


def _disk(
    devices: ET.Element, path: str, fmt: str, target: str, cap: Allocation | None
) -> ET.Element:
    """A virtio disk; with ``cap``, its IOPS cap (rate, burst and burst length)."""
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt, cache="none", io="native")
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=target, bus="virtio")
    if cap is not None and cap.iops:
        # The recommendation is for the disk the workload uses, which is what
        # the shadow's I/O phase measured (its scratch disk).
        _set_iotune(_sub(disk, "iotune"), cap)
    return disk


# <iotune>'s IOPS elements in the order libvirt writes them, and the
# Allocation field each comes from.
IOTUNE_IOPS = (
    ("total_iops_sec", "iops"),
    ("total_iops_sec_max", "iops_burst"),
    ("total_iops_sec_max_length", "iops_burst_s"),
)


def _set_iotune(tune: ET.Element, a: Allocation) -> None:
    """Set ``tune``'s IOPS elements to ``a``'s, removing those ``a`` leaves unset
    (libvirt refuses a burst length without a burst rate)."""
    for tag, _ in IOTUNE_IOPS:
        old = tune.find(tag)
        if old is not None:
            tune.remove(old)
    for tag, attr in IOTUNE_IOPS:
        value = getattr(a, attr)
        if value:
            ET.SubElement(tune, tag).text = str(value)


def iotune_of(xml: str) -> tuple[int | None, int | None, int | None]:
    """The workload disk's IOPS rate, burst rate and burst length (None where unset)."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    disks = _hard_disks(root)
    out: list[int | None] = []
    for tag, _ in IOTUNE_IOPS:
        text = disks[-1].findtext(f"iotune/{tag}") if disks else None
        out.append(int(text) if text and int(text) > 0 else None)
    return out[0], out[1], out[2]


# -- reading and changing libvirt's own XML of a defined VM -----------------------------
def with_uuid(xml: str, uuid: str) -> str:
    root = ET.fromstring(xml)  # noqa: S314 - our own XML
    ET.SubElement(root, "uuid").text = uuid
    return ET.tostring(root, encoding="unicode")


def _hard_disks(root: ET.Element) -> list[ET.Element]:
    """The VM's disks, without CD-ROMs (a store image's seed is one)."""
    return [d for d in root.findall("devices/disk") if d.get("device", "disk") == "disk"]


def disk_targets(xml: str) -> list[str]:
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    targets = (d.find("target") for d in _hard_disks(root))
    return [t.get("dev", "") for t in targets if t is not None and t.get("dev")]


def workload_disk(xml: str) -> str | None:
    """The disk the IOPS cap belongs on: the last one (the built-in image's
    scratch disk ``vdb`` after its root disk; a store image's only disk)."""
    targets = disk_targets(xml)
    return targets[-1] if targets else None


def scratch_file(xml: str) -> Path | None:
    """The built-in image's scratch disk file, if the definition has one."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    for source in root.findall("devices/disk/source"):
        path = source.get("file")
        if path and (Path(path).name == SCRATCH_DISK or path.endswith("-scratch.img")):
            return Path(path)
    return None


def iops_of(xml: str) -> int | None:
    return iotune_of(xml)[0]


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
    disks = _hard_disks(root)
    for disk in disks:
        tune = disk.find("iotune")
        if a.iops and disk is disks[-1]:  # the workload's disk only
            if tune is None:
                tune = ET.SubElement(disk, "iotune")
            _set_iotune(tune, a)
        elif tune is not None:
            disk.remove(tune)
    return ET.tostring(root, encoding="unicode")
