"""vmshadow's request element in a libvirt domain's ``<metadata>``, and the status
element vmshadow writes beside it, read and written without libvirt.

An operator asks for a right-sizing by defining a domain that carries::

    <metadata>
      <vmshadow:request xmlns:vmshadow="https://vmshadow.dev/xmlns/request/1"
          profile="web" load="200" policy="auto-within:20"/>
    </metadata>

and vmshadow answers in its own element (another namespace, so the request
stays exactly as the operator wrote it)::

      <vmshadow-status:status xmlns:vmshadow-status="https://vmshadow.dev/xmlns/status/1"
          transition="..." state="predicted" recommended="2/1024/400" .../>

Here only the XML: the attributes' syntax (each error names the attribute);
whether a profile exists or a schedule is in range is the controller's
(``controller.detection``), with the same checks as the API. The size edits of
an adopted domain (``resized_xml``, ``restored_xml``) change the size elements
alone and leave every other element as libvirt wrote it.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError

REQUEST_NS = "https://vmshadow.dev/xmlns/request/1"
REQUEST_KEY = "vmshadow"
STATUS_NS = "https://vmshadow.dev/xmlns/status/1"
STATUS_KEY = "vmshadow-status"
REQUEST_ATTRS = ("profile", "load", "policy", "at", "image")
_MAX_ATTR = 512  # a request's attribute longer than this is a mistake, not a request


@dataclass(frozen=True)
class RequestElement:
    """A request element's attributes, syntax-checked."""

    profile: str
    load: float | None = None
    policy: str = "manual"
    at: datetime | None = None
    image: str = "builtin"
    digest: str = ""  # identifies this request among later ones on the same domain

    def text(self) -> str:
        """The request as attributes, for the status element and events."""
        parts = [f"profile={self.profile}"]
        if self.load is not None:
            parts.append(f"load={self.load:g}")
        parts.append(f"policy={self.policy}")
        if self.at is not None:
            parts.append(f"at={self.at.isoformat()}")
        if self.image != "builtin":
            parts.append(f"image={self.image}")
        return " ".join(parts)


@dataclass(frozen=True)
class StatusElement:
    """What vmshadow did with a domain's request (the status element)."""

    transition: str
    state: str
    request_digest: str
    request: str = ""
    policy: str = ""
    requested: str = ""
    recommended: str = ""
    final: str = ""
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainRequest:
    """One domain as detection sees it: its request and status elements (None
    when absent) and which transition has adopted it."""

    name: str
    uuid: str
    active: bool
    request: str | None
    status: StatusElement | None
    adopted_by: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def request_digest(attrs: dict[str, str]) -> str:
    """The same attributes in any order give the same digest."""
    text = "\n".join(f"{k}={attrs[k]}" for k in sorted(attrs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_request(xml: str) -> RequestElement:
    """The request element as ``virDomainGetMetadata`` returns it (or a domain's
    whole XML); ConfigError naming the attribute when one is wrong."""
    try:
        el = ET.fromstring(xml)  # noqa: S314 - libvirt's output; ET resolves no entities
    except ET.ParseError as exc:
        raise ConfigError("request", f"not well-formed XML: {exc}") from exc
    found = find_request(el)
    if found is None:
        raise ConfigError("request", f"no <request> element in namespace {REQUEST_NS}")
    attrs = {_local(k): v for k, v in found.attrib.items()}
    for name in attrs:
        if name not in REQUEST_ATTRS:
            raise ConfigError(name, f"unknown attribute; known: {', '.join(REQUEST_ATTRS)}")
        if len(attrs[name]) > _MAX_ATTR:
            raise ConfigError(name, f"longer than {_MAX_ATTR} characters")
    profile = attrs.get("profile", "").strip()
    if not profile:
        raise ConfigError("profile", "required: the workload profile the shadow runs")
    load: float | None = None
    if "load" in attrs:
        try:
            load = float(attrs["load"])
        except ValueError as exc:
            raise ConfigError("load", f"{attrs['load']!r} is not a number") from exc
    at: datetime | None = None
    if "at" in attrs:
        try:
            at = datetime.fromisoformat(attrs["at"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                "at", f"{attrs['at']!r} is not an ISO 8601 time (e.g. 2026-12-02T09:00:00Z)"
            ) from exc
        if at.tzinfo is None:
            raise ConfigError("at", "needs a time zone, e.g. a trailing Z for UTC")
    return RequestElement(
        profile=profile,
        load=load,
        policy=attrs.get("policy", "manual").strip() or "manual",
        at=at,
        image=attrs.get("image", "builtin").strip() or "builtin",
        digest=request_digest(attrs),
    )


def find_request(el: ET.Element) -> ET.Element | None:
    """The request element: ``el`` itself, or inside a domain's ``<metadata>``."""
    if _local(el.tag) == "request" and _ns(el.tag) in (REQUEST_NS, ""):
        return el
    return el.find(f"metadata/{{{REQUEST_NS}}}request")


def request_digest_of(xml: str) -> str | None:
    """The digest of a request element however its attributes are (None: no element)."""
    try:
        found = find_request(ET.fromstring(xml))  # noqa: S314 - libvirt's output
    except ET.ParseError:
        return None
    if found is None:
        return None
    return request_digest({_local(k): v for k, v in found.attrib.items()})


def request_xml(**attrs: str) -> str:
    """A request element (docs, tests, and an operator's script through the CLI)."""
    for name in attrs:
        if name not in REQUEST_ATTRS:
            raise ConfigError(name, f"unknown attribute; known: {', '.join(REQUEST_ATTRS)}")
    el = ET.Element(f"{{{REQUEST_NS}}}request", {k: attrs[k] for k in sorted(attrs)})
    ET.register_namespace(REQUEST_KEY, REQUEST_NS)
    return ET.tostring(el, encoding="unicode")


# -- the status element -----------------------------------------------------------------
_STATUS_ATTRS = (
    "transition",
    "state",
    "request-digest",
    "request",
    "policy",
    "requested",
    "recommended",
    "final",
    "note",
)


def status_xml(s: StatusElement) -> str:
    """The element ``virDomainSetMetadata`` is given (it adds the namespace prefix)."""
    values = {
        "transition": s.transition,
        "state": s.state,
        "request-digest": s.request_digest,
        "request": s.request,
        "policy": s.policy,
        "requested": s.requested,
        "recommended": s.recommended,
        "final": s.final,
        "note": s.note,
        **s.extra,
    }
    el = ET.Element("status", {k: v for k, v in values.items() if v})
    return ET.tostring(el, encoding="unicode")


def parse_status(xml: str) -> StatusElement | None:
    """The status element (alone or in a domain's XML); None when there is none."""
    try:
        el = ET.fromstring(xml)  # noqa: S314 - libvirt's output
    except ET.ParseError:
        return None
    if _local(el.tag) != "status":
        found = el.find(f"metadata/{{{STATUS_NS}}}status")
        if found is None:
            return None
        el = found
    a = {_local(k): v for k, v in el.attrib.items()}
    if not a.get("transition"):
        return None
    return StatusElement(
        transition=a["transition"],
        state=a.get("state", ""),
        request_digest=a.get("request-digest", ""),
        request=a.get("request", ""),
        policy=a.get("policy", ""),
        requested=a.get("requested", ""),
        recommended=a.get("recommended", ""),
        final=a.get("final", ""),
        note=a.get("note", ""),
        extra={k: v for k, v in a.items() if k not in _STATUS_ATTRS},
    )


# -- an adopted domain's size ----------------------------------------------------------
def _hard_disks(root: ET.Element) -> list[ET.Element]:
    return [d for d in root.findall("devices/disk") if d.get("device", "disk") == "disk"]


def _kib(el: ET.Element | None) -> int:
    """A memory element in KiB, whatever unit it was written in."""
    if el is None or not (el.text or "").strip():
        return 0
    units = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024}
    units |= {"m": 1024, "mib": 1024, "mb": 1e6 / 1024, "g": 1024**2, "gib": 1024**2}
    unit = el.get("unit", "KiB").lower()
    return int(int((el.text or "0").strip()) * units.get(unit, 1))


def original_size(xml: str) -> dict[str, Any]:
    """What ``restored_xml`` needs to put a domain's size back: its vCPUs, memory
    (KiB, current and maximum) and the IOPS tuning of the disk vmshadow caps."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's output
    vcpu = root.find("vcpu")
    max_vcpus = int((vcpu.text or "1").strip()) if vcpu is not None else 1
    disks = _hard_disks(root)
    tune: dict[str, str] | None = None
    target = None
    if disks:
        t = disks[-1].find("target")
        target = t.get("dev") if t is not None else None
        el = disks[-1].find("iotune")
        if el is not None:
            tune = {_local(c.tag): (c.text or "") for c in el}
    max_kib = _kib(root.find("memory"))
    return {
        "vcpus": int(vcpu.get("current", max_vcpus)) if vcpu is not None else 1,
        "max_vcpus": max_vcpus,
        "memory_kib": _kib(root.find("currentMemory")) or max_kib,
        "max_memory_kib": max_kib,
        "disk": target,
        "iotune": tune,
    }


def asked_size(original: dict[str, Any]) -> Allocation:
    """The size the domain was defined with: the request's ask. ConfigError
    (vcpus, memory_mib) when it is below what vmshadow can size."""
    iops = None
    tune = original.get("iotune") or {}
    if tune.get("total_iops_sec", "").strip().isdigit() and int(tune["total_iops_sec"]) > 0:
        iops = int(tune["total_iops_sec"])
    return Allocation(int(original["vcpus"]), int(original["memory_kib"]) // 1024, iops)


def _set_memory(root: ET.Element, tag: str, kib: int) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.SubElement(root, tag)
    el.text = str(kib)
    el.set("unit", "KiB")


def _set_vcpus(root: ET.Element, current: int, maximum: int) -> None:
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = ET.SubElement(root, "vcpu")
    vcpu.text = str(maximum)
    if current == maximum:
        vcpu.attrib.pop("current", None)
    else:
        vcpu.set("current", str(current))


def resized_xml(xml: str, a: Allocation) -> str:
    """The domain sized at ``a``, maxima included (a pending domain is right-sized,
    not left able to grow into what was asked); the IOPS cap on its last disk
    when ``a`` has one, every other disk's tuning as it was."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's output
    _set_vcpus(root, a.vcpus, a.vcpus)
    _set_memory(root, "memory", a.memory_mib * 1024)
    _set_memory(root, "currentMemory", a.memory_mib * 1024)
    disks = _hard_disks(root)
    if a.iops and disks:
        tune = disks[-1].find("iotune")
        if tune is None:
            tune = ET.SubElement(disks[-1], "iotune")
        total = tune.find("total_iops_sec")
        if total is None:
            total = ET.SubElement(tune, "total_iops_sec")
        total.text = str(a.iops)
        # A total excludes the read/write split (libvirt refuses both at once).
        for split in ("read_iops_sec", "write_iops_sec"):
            el = tune.find(split)
            if el is not None:
                tune.remove(el)
    return ET.tostring(root, encoding="unicode")


def restored_xml(xml: str, original: dict[str, Any]) -> str:
    """The domain with the size it had before vmshadow adopted it."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's output
    _set_vcpus(root, int(original["vcpus"]), int(original["max_vcpus"]))
    _set_memory(root, "memory", int(original["max_memory_kib"]))
    _set_memory(root, "currentMemory", int(original["memory_kib"]))
    disks = _hard_disks(root)
    if disks:
        disk = disks[-1]
        old = disk.find("iotune")
        if old is not None:
            disk.remove(old)
        tune = original.get("iotune")
        if tune is not None:
            el = ET.SubElement(disk, "iotune")
            for k, v in tune.items():
                ET.SubElement(el, k).text = v
    return ET.tostring(root, encoding="unicode")


def alloc_slash(a: Allocation | None) -> str:
    """``2/1024/400`` (vCPUs/MiB/IOPS, ``-`` for no cap): short enough for an attribute."""
    if a is None:
        return ""
    return f"{a.vcpus}/{a.memory_mib}/{a.iops if a.iops else '-'}"
