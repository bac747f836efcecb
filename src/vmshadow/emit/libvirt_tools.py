"""The recommendation as ``virt-install`` arguments and as ``virsh`` commands.

Both are libvirt's own tools, so the figures map one to one onto the domain
XML vmshadow writes itself: ``--vcpus N,maxvcpus=M`` is ``<vcpu current=N>M``,
``--memory N,maxmemory=M`` is ``<currentMemory>`` under ``<memory>`` (a
balloon that can grow live up to the asked size), and the IOPS cap is the
disk's ``<iotune><total_iops_sec>``.
"""

from __future__ import annotations

import shlex

from vmshadow.emit.recommendation import Recommendation


def header(rec: Recommendation) -> str:
    iops = f", {rec.iops} IOPS" if rec.iops is not None else ""
    if rec.iops_burst is not None:
        iops += f" (bursts of {rec.iops_burst} for up to {rec.iops_burst_s or 1} s)"
    room = ""
    if rec.top_vcpus > rec.vcpus or rec.top_memory_mib > rec.memory_mib:
        room = f" (room to grow live to {rec.top_vcpus} vCPU, {rec.top_memory_mib} MiB)"
    origin = f" ({rec.origin})" if rec.origin else ""
    return f"# vmshadow{origin}: {rec.name} at {rec.vcpus} vCPU, {rec.memory_mib} MiB{iops}{room}"


def virt_install(rec: Recommendation) -> str:
    """Arguments to add to a ``virt-install`` command line (not a whole command:
    the image, OS and network are the operator's)."""
    vcpus = str(rec.vcpus) + (f",maxvcpus={rec.top_vcpus}" if rec.top_vcpus > rec.vcpus else "")
    memory = str(rec.memory_mib)
    if rec.top_memory_mib > rec.memory_mib:
        memory += f",maxmemory={rec.top_memory_mib}"
    args = ["--vcpus", vcpus, "--memory", memory]
    lines = [header(rec)]
    iotune = f"iotune.total_iops_sec={rec.iops}" if rec.iops is not None else None
    if rec.disk_gib is not None:
        disk = f"size={rec.disk_gib}" + (f",{iotune}" if iotune else "")
        args += ["--disk", disk]
    elif iotune:
        lines.append(f"# add to your --disk option: {iotune}")
    lines.append(shlex.join(args))
    if rec.iops_burst is not None:
        # virt-install (4.1) has no --disk option for the burst: virsh sets it after.
        lines.append("# then the burst, which virt-install cannot set:")
        lines.append(shlex.join(["virsh", *_burst_args(rec), "--config"]))
    return "\n".join(lines) + "\n"


def virsh(rec: Recommendation) -> str:
    """``virsh`` commands that give an existing domain the recommended size.

    The persistent configuration first (it holds the maxima, and a shrink can
    only happen there), then the running domain where libvirt can change it
    live: vCPUs and memory within the maxima the domain was started with, the
    I/O cap at any time. A live command the running domain cannot take (a
    maximum below the new size, a stopped domain) fails on its own and the
    configuration still holds the size for the next start, which is vmshadow's
    own resize rule (restart when live is not possible).
    """
    n, kib, top_kib = rec.name, rec.memory_mib * 1024, rec.top_memory_mib * 1024

    def cmd(*words: str) -> str:
        return shlex.join(["virsh", *words])

    lines = [header(rec), "# the configuration, used from the next start on"]
    lines.append(cmd("setmaxmem", n, f"{top_kib}K", "--config"))
    lines.append(cmd("setmem", n, f"{kib}K", "--config"))
    lines.append(cmd("setvcpus", n, str(rec.top_vcpus), "--config", "--maximum"))
    lines.append(cmd("setvcpus", n, str(rec.vcpus), "--config"))
    if rec.iops is not None:
        lines.append(cmd(*_burst_args(rec), "--config"))
    lines.append("# the running domain, within the maxima it was started with")
    lines.append(cmd("setvcpus", n, str(rec.vcpus), "--live"))
    lines.append(cmd("setmem", n, f"{kib}K", "--live"))
    if rec.iops is not None:
        lines.append(cmd(*_burst_args(rec), "--live"))
    return "\n".join(lines) + "\n"


def _burst_args(rec: Recommendation) -> list[str]:
    """``blkdeviotune``'s words for the cap: the rate, and the burst when there is one."""
    words = ["blkdeviotune", rec.name, rec.disk_target, "--total-iops-sec", str(rec.iops)]
    if rec.iops_burst is not None:
        words += ["--total-iops-sec-max", str(rec.iops_burst)]
        words += ["--total-iops-sec-max-length", str(rec.iops_burst_s or 1)]
    return words
