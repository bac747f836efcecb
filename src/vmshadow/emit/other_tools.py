"""The recommendation for Terraform's libvirt provider, KubeVirt and OpenStack.

Each tool names the same three figures its own way, and two of them have no
place for one of them: the libvirt provider has no disk I/O attribute (an
XSLT transform of its domain XML adds libvirt's ``<iotune>``), and a KubeVirt
instance type has no I/O limit at all (the figure is kept as an annotation, so
it is not lost, and the output says so).
"""

from __future__ import annotations

import re
import shlex

import yaml

from vmshadow.emit.libvirt_tools import header
from vmshadow.emit.recommendation import Recommendation

IOTUNE_XSLT = """<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy><xsl:apply-templates select="node()|@*"/></xsl:copy>
  </xsl:template>
  <!-- one cap per disk: an <iotune> already there gives way to this one -->
  <xsl:template match="/domain/devices/disk[@device='disk']/iotune"/>
  <xsl:template match="/domain/devices/disk[@device='disk']">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
      <iotune><total_iops_sec>{iops}</total_iops_sec>{burst}</iotune>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
"""
KUBEVIRT_API = "instancetype.kubevirt.io/v1beta1"
IOPS_ANNOTATION = "vmshadow.io/recommended-iops"


def iotune_xslt(iops: int, burst: int | None = None, burst_s: int | None = None) -> str:
    more = (
        f"<total_iops_sec_max>{burst}</total_iops_sec_max>"
        f"<total_iops_sec_max_length>{burst_s or 1}</total_iops_sec_max_length>"
        if burst is not None
        else ""
    )
    return IOTUNE_XSLT.format(iops=iops, burst=more)


def _hcl_label(name: str) -> str:
    # A resource label is an identifier: letters, digits, '_' and '-', not
    # starting with a digit; the domain keeps its real name in `name`.
    label = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return label if re.match(r"[A-Za-z_]", label) else f"vm_{label}"


def terraform(rec: Recommendation) -> str:
    """A ``libvirt_domain`` resource of the dmacvicar/libvirt provider."""
    lines = [header(rec), f'resource "libvirt_domain" "{_hcl_label(rec.name)}" {{']
    lines.append(f'  name   = "{rec.name}"')
    lines.append(f"  vcpu   = {rec.vcpus}")
    lines.append(f"  memory = {rec.memory_mib}")
    if rec.iops is not None:
        lines.append("")
        lines.append("  # The provider has no attribute for disk I/O limits: this transform")
        lines.append("  # adds libvirt's <iotune> to each disk of the domain XML it writes.")
        lines.append("  xml {")
        lines.append("    xslt = <<-EOT")
        xslt = iotune_xslt(rec.iops, rec.iops_burst, rec.iops_burst_s)
        lines += [f"      {ln}" if ln else "" for ln in xslt.splitlines()]
        lines.append("    EOT")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def k8s_name(name: str) -> str:
    """A Kubernetes object name (a DNS subdomain: lower case, digits, '-' and '.')."""
    return re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.") or "vm"


def _quantity(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def kubevirt(rec: Recommendation) -> str:
    """A ``VirtualMachineInstancetype`` (namespaced) with the recommended guest size.

    ``maxSockets`` and ``memory.maxGuest`` carry the asked size, which is how
    KubeVirt leaves room for CPU and memory hotplug.
    """
    cpu: dict[str, object] = {"guest": rec.vcpus}
    if rec.top_vcpus > rec.vcpus:
        cpu["maxSockets"] = rec.top_vcpus
    memory: dict[str, object] = {"guest": _quantity(rec.memory_mib)}
    if rec.top_memory_mib > rec.memory_mib:
        memory["maxGuest"] = _quantity(rec.top_memory_mib)
    metadata: dict[str, object] = {"name": k8s_name(rec.name)}
    comment = ""
    if rec.iops is not None:
        notes = {IOPS_ANNOTATION: str(rec.iops)}
        if rec.iops_burst is not None:
            notes[f"{IOPS_ANNOTATION}-burst"] = f"{rec.iops_burst} for {rec.iops_burst_s or 1}s"
        metadata["annotations"] = notes
        comment = (
            "# KubeVirt instance types have no disk I/O limit: the recommended IOPS is\n"
            f"# kept in the {IOPS_ANNOTATION} annotation for your storage class or QoS.\n"
        )
    doc = {
        "apiVersion": KUBEVIRT_API,
        "kind": "VirtualMachineInstancetype",
        "metadata": metadata,
        "spec": {"cpu": cpu, "memory": memory},
    }
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return f"{header(rec)}\n{comment}{body}"


def openstack(rec: Recommendation) -> str:
    """An ``openstack flavor create`` command; the IOPS cap is Nova's
    ``quota:disk_total_iops_sec`` extra spec (applied by libvirt's iotune)."""
    args = ["openstack", "flavor", "create", "--vcpus", str(rec.vcpus), "--ram"]
    args += [str(rec.memory_mib), "--disk", str(rec.disk_gib or 0)]
    if rec.iops is not None:
        args += ["--property", f"quota:disk_total_iops_sec={rec.iops}"]
    args.append(rec.name)
    lines = [header(rec)]
    if rec.disk_gib is None:
        lines.append("# --disk 0: the root disk takes the size of the image it boots")
    if rec.iops_burst is not None:
        lines.append("# Nova has no extra spec for an IOPS burst: the flavor caps the rate alone")
    lines.append(shlex.join(args))
    return "\n".join(lines) + "\n"
