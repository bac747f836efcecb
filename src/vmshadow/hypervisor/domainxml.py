"""libvirt domain XML for shadows, built without talking to libvirt.

Each device is a small function returning an element, so the document reads
top to bottom like the XML it makes and tests compare it to golden files.
The shadow deliberately has no ``<interface>``: it must not reach any network.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.shadow import (
    AGENT_CHANNEL,
    SCRATCH_SERIAL,
    TOOLS_SERIAL,
    Accelerator,
    ShadowSpec,
)

METADATA_NS = "https://vmshadow.dev/xmlns/shadow/1"
METADATA_KEY = "vmshadow"
TCG_TB_CACHE_MIB = 128  # a target-OS shadow's translation cache under TCG


@dataclass(frozen=True)
class ShadowMetadata:
    """What vmshadow records inside a domain so it can find and clean up its own."""

    role: str
    shadow_id: str
    run_dir: str
    created_at: str
    transition_id: str | None = None
    owner: str = ""


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def metadata_element(meta: ShadowMetadata) -> ET.Element:
    el = ET.Element(f"{{{METADATA_NS}}}shadow")
    _sub(el, f"{{{METADATA_NS}}}role", meta.role)
    _sub(el, f"{{{METADATA_NS}}}id", meta.shadow_id)
    _sub(el, f"{{{METADATA_NS}}}run-dir", meta.run_dir)
    _sub(el, f"{{{METADATA_NS}}}created-at", meta.created_at)
    if meta.transition_id:
        _sub(el, f"{{{METADATA_NS}}}transition", meta.transition_id)
    if meta.owner:
        _sub(el, f"{{{METADATA_NS}}}owner", meta.owner)
    return el


def parse_metadata(xml: str) -> ShadowMetadata | None:
    """Read vmshadow's metadata back from a domain's XML; None if it is not ours."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output, not user input
    el = root.find(f"metadata/{{{METADATA_NS}}}shadow")
    if el is None:
        el = root if root.tag == f"{{{METADATA_NS}}}shadow" else None
    if el is None:
        return None
    return _metadata_of(el)


def parse_metadata_element(xml: str) -> ShadowMetadata | None:
    """vmshadow's metadata element alone, as libvirt's ``virDomainGetMetadata``
    returns it (without its namespace); None if it is not that element."""
    el = ET.fromstring(xml)  # noqa: S314 - libvirt's own output, not user input
    return _metadata_of(el) if _local(el.tag) == "shadow" else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _metadata_of(el: ET.Element) -> ShadowMetadata:
    values = {_local(child.tag): child.text or "" for child in el}
    return ShadowMetadata(
        role=values.get("role", ""),
        shadow_id=values.get("id", ""),
        run_dir=values.get("run-dir", ""),
        created_at=values.get("created-at", ""),
        transition_id=values.get("transition") or None,
        owner=values.get("owner", ""),
    )


def backing_chain(disk: ET.Element, chain: Sequence[tuple[Path, str]]) -> None:
    """Name a disk's backing files (path, format), each with ``relabel='no'``.

    Left to itself libvirt's DAC driver gives every file of the chain to QEMU's
    user at start and hands back only the top one at stop: the base every
    shadow boots stayed writable by any QEMU process. Named here, the backing
    files keep their owner and are only read (measured on libvirt 9.0: the
    base stays root's, the guest boots). The empty element ends the chain, so
    libvirt probes no further than what vmshadow checked.
    """
    parent = disk
    for path, fmt in chain:
        store = _sub(parent, "backingStore", type="file")
        _sub(store, "format", type=fmt)
        source = _sub(store, "source", file=str(path))
        _sub(source, "seclabel", model="dac", relabel="no")
        parent = store
    _sub(parent, "backingStore")


def _disk(
    devices: ET.Element,
    path: str,
    fmt: str,
    target: str,
    *,
    cache: str,
    chain: Sequence[tuple[Path, str]] = (),
    serial: str | None = None,
) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    driver = {"name": "qemu", "type": fmt, "cache": cache}
    if cache == "none":
        # io=native needs O_DIRECT, which cache=none implies.
        driver["io"] = "native"
    _sub(disk, "driver", **driver)
    _sub(disk, "source", file=path)
    if chain:
        backing_chain(disk, chain)
    _sub(disk, "target", dev=target, bus="virtio")
    if serial is not None:
        _sub(disk, "serial", serial)


def _readonly_disk(
    devices: ET.Element, path: Path, target: str, *, shared: bool, serial: str | None = None
) -> None:
    """An ISO 9660 image as a read-only virtio disk (no IDE CD-ROM: virtio is
    what every cloud kernel has built in or in its initramfs).

    ``shared``: a file every shadow reads (the tools disk) keeps its owner
    (``relabel='no'``; it is made readable by QEMU's group); a shadow's own
    file (its seed) is handed to QEMU's user for the run, like its overlay.
    """
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="raw")
    source = _sub(disk, "source", file=str(path))
    if shared:
        _sub(source, "seclabel", model="dac", relabel="no")
    _sub(disk, "target", dev=target, bus="virtio")
    if serial is not None:
        _sub(disk, "serial", serial)
    _sub(disk, "readonly")


def _shadow_metadata(spec: ShadowSpec) -> ShadowMetadata:
    return ShadowMetadata(
        role="shadow",
        shadow_id=spec.shadow_id,
        run_dir=str(spec.run_dir),
        created_at=spec.created_at,
        transition_id=spec.transition_id,
        owner=spec.owner,
    )


def _metadata(dom: ET.Element, spec: ShadowSpec) -> None:
    _sub(dom, "metadata").append(metadata_element(_shadow_metadata(spec)))


def _lifecycle(dom: ET.Element) -> None:
    # A shadow that stops for any reason is gone: nothing restarts it.
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(dom, event, "destroy")


def _common_devices(devices: ET.Element, spec: ShadowSpec) -> None:
    """The agent's channel, the console and the balloon and RNG every shadow has."""
    channel = _sub(devices, "channel", type="unix")
    # No path: libvirt picks one under its own directory, where QEMU may create it.
    _sub(channel, "source", mode="bind")
    _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(spec.console_log))
    _sub(serial, "target", port="0")
    _sub(devices, "controller", type="usb", model="none")
    balloon = _sub(devices, "memballoon", model="virtio")
    _sub(balloon, "stats", period="1")
    # Seeds the guest's CRNG at boot (see the image's virtio-rng module); the
    # rate limit keeps a misbehaving guest from draining the host's pool.
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "rate", bytes="4096", period="1000")
    _sub(rng, "backend", model="random").text = "/dev/urandom"


def shadow_domain_xml(spec: ShadowSpec, *, scratch_cache: str = "none") -> str:
    """The domain XML of one shadow: the built-in OS, or the target's (``spec.target``)."""
    if spec.target is not None:
        return _target_os_xml(spec, scratch_cache)
    ET.register_namespace(METADATA_KEY, METADATA_NS)
    dom = ET.Element("domain", type=spec.accelerator.libvirt_domain_type)
    _sub(dom, "name", spec.name)
    _metadata(dom, spec)
    _sub(dom, "memory", str(spec.size.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.size.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "kernel", str(spec.kernel))
    _sub(os_el, "initrd", str(spec.initrd))
    _sub(os_el, "cmdline", " ".join(spec.kernel_args))
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _lifecycle(dom)
    devices = _sub(dom, "devices")
    base = () if spec.base is None else ((spec.base, "qcow2"),)
    _disk(devices, str(spec.root_disk), "qcow2", "vda", cache="writeback", chain=base)
    _disk(devices, str(spec.scratch_disk), "raw", "vdb", cache=scratch_cache)
    _common_devices(devices, spec)
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def _target_os_xml(spec: ShadowSpec, scratch_cache: str) -> str:
    """A shadow of the target's own OS: its image booted by the BIOS from an
    overlay, a NoCloud seed that starts the agent from the tools disk, and
    still no network interface."""
    target = spec.target
    assert target is not None
    ET.register_namespace(METADATA_KEY, METADATA_NS)
    dom = ET.Element("domain", type=spec.accelerator.libvirt_domain_type)
    _sub(dom, "name", spec.name)
    _metadata(dom, spec)
    _sub(dom, "memory", str(spec.size.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.size.vcpus))
    # cloud-init reads "ds=nocloud" in the DMI serial as "the seed is local":
    # an image that would otherwise probe a cloud's metadata address first
    # (120 s of retries with no network) goes straight to the seed disk.
    sysinfo = _sub(dom, "sysinfo", type="smbios")
    _sub(_sub(sysinfo, "system"), "entry", "ds=nocloud", name="serial")
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    _sub(os_el, "smbios", mode="sysinfo")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    if spec.accelerator is Accelerator.TCG:
        # TCG's translation cache defaults to 1 GiB and a full OS fills it:
        # QEMU reached 1.37 GiB RSS for a 512 MiB guest; 128 MiB held it near
        # 500 MiB with no measurable slowdown (libvirt 9.0, QEMU 7.2).
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(TCG_TB_CACHE_MIB), unit="MiB")
    _lifecycle(dom)
    devices = _sub(dom, "devices")
    _disk(devices, str(spec.root_disk), "qcow2", "vda", cache="writeback", chain=target.chain)
    # The guest finds its scratch disk by this serial, not by its name.
    _disk(
        devices,
        str(spec.scratch_disk),
        "raw",
        "vdb",
        cache=scratch_cache,
        serial=SCRATCH_SERIAL,
    )
    _readonly_disk(devices, target.seed, "vdc", shared=False)
    _readonly_disk(devices, target.tools, "vdd", shared=True, serial=TOOLS_SERIAL)
    _common_devices(devices, spec)
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def restored_shadow_xml(
    saved_xml: str,
    spec: ShadowSpec,
    root_chain: Sequence[tuple[Path, str]],
    *,
    uuid: str,
) -> str:
    """The domain XML of a shadow restored from a template's saved state.

    Starts from the XML libvirt saved (its machine type, CPU model and device
    addresses are what QEMU's stream was made with, so they stay as they are)
    and changes only what is this shadow's own: name, UUID, metadata, its
    overlay (``root_chain``: the template's frozen overlay, then the base or
    the store image's chain), scratch disk, seed and console log.
    """
    ET.register_namespace(METADATA_KEY, METADATA_NS)
    dom = ET.fromstring(saved_xml)  # noqa: S314 - libvirt's own output, read from our file
    _set_text(dom, "name", spec.name)
    _set_text(dom, "uuid", uuid)
    meta = dom.find("metadata")
    if meta is None:
        meta = _sub(dom, "metadata")
    for old in meta.findall(f"{{{METADATA_NS}}}shadow"):
        meta.remove(old)
    meta.append(metadata_element(_shadow_metadata(spec)))
    sources = {"vda": spec.root_disk, "vdb": spec.scratch_disk}
    if spec.target is not None:
        sources["vdc"] = spec.target.seed
    devices = dom.find("devices")
    if devices is None:
        raise ValueError("a saved shadow's XML has no devices")
    for disk in devices.findall("disk"):
        target = disk.find("target")
        dev = target.get("dev", "") if target is not None else ""
        if dev not in sources:
            continue
        source = disk.find("source")
        if source is None:
            raise ValueError(f"disk {dev} of a saved shadow names no file")
        source.set("file", str(sources[dev]))
        if dev == "vda":
            _replace_chain(disk, source, root_chain)
    for tag in ("serial", "console"):
        for chr_el in devices.findall(tag):
            source = chr_el.find("source")
            if chr_el.get("type") == "file" and source is not None:
                source.set("path", str(spec.console_log))
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def _set_text(dom: ET.Element, tag: str, text: str) -> None:
    el = dom.find(tag)
    if el is None:
        el = _sub(dom, tag)
    el.text = text


def _replace_chain(disk: ET.Element, source: ET.Element, chain: Sequence[tuple[Path, str]]) -> None:
    """The disk's backing chain replaced by ``chain``, placed right after its source."""
    for old in disk.findall("backingStore"):
        disk.remove(old)
    holder = ET.Element("disk")
    backing_chain(holder, chain)
    at = list(disk).index(source) + 1
    for i, el in enumerate(holder):
        disk.insert(at + i, el)
