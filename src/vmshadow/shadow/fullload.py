"""Closing the loop: run a profile at its full load inside a full VM of a given
size and measure what it really needed and whether it kept up.

The full VM is the built-in image (it carries the same agent as the shadow),
defined and started through the same adapter the controller launches with,
and removed on every path. The profile's three phases run at the full load,
spread over the VM's vCPUs; both views are sampled as in a shadow. "Kept up"
is per resource: the CPU phase's busy vCPUs against what the load asks, the
I/O phase's IOPS against its rate, and the memory phase holding its working
set. The load sustained is the load times the worst of those ratios.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from vmshadow.agent.client import AgentClient
from vmshadow.agent.conversation import AgentReportedError, Sample
from vmshadow.agent.errors import ProtocolError
from vmshadow.config import Settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.prediction import Requirement
from vmshadow.domain.ramp import step_requirement
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import BuiltinImage, FullVmSpec
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import ImageFiles
from vmshadow.shadow.hostsampler import HostSampler
from vmshadow.workloads.profiles import Profile

SUSTAINED = 0.95  # share of the asked rate that counts as keeping up


@dataclass
class FullLoadResult:
    profile: str
    load: float
    allocation: Allocation
    asked: Requirement  # what the profile's costs say the load needs
    realized: Requirement  # what the full VM measured
    ratios: dict[str, float]  # realized / asked per resource (memory: 1 when held)
    boot_s: float
    run_s: float
    error: str | None = None
    vm_name: str = ""
    disk_iops_p95: float = 0.0  # every disk, host and guest views: includes the OS's own I/O
    points: list[UsagePoint] = field(default_factory=list, repr=False)

    @property
    def sustained_share(self) -> float:
        return min(self.ratios.values()) if self.ratios else 0.0

    @property
    def sustained_load(self) -> float:
        return self.load * min(1.0, self.sustained_share)

    @property
    def sustained(self) -> bool:
        return self.error is None and self.sustained_share >= SUSTAINED

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "load": self.load,
            "allocation": self.allocation.as_dict(),
            "asked": self.asked.as_dict(),
            "realized": self.realized.as_dict(),
            "ratios": {k: round(v, 3) for k, v in self.ratios.items()},
            "sustained_load": round(self.sustained_load, 3),
            "sustained": self.sustained,
            "boot_s": round(self.boot_s, 2),
            "run_s": round(self.run_s, 2),
            "error": self.error,
            "disk_iops_p95": round(self.disk_iops_p95, 1),
        }


def _ratios(asked: Requirement, realized: Requirement) -> dict[str, float]:
    def share(got: float, want: float) -> float:
        return 1.0 if want <= 0 else min(1.0, got / want)

    # The memory phase's guest-wide usage includes the guest's own; what
    # matters is that the working set fitted, i.e. usage reached the ask.
    return {
        "vcpus": share(realized.vcpus, asked.vcpus),
        "memory_mib": share(realized.memory_mib, asked.memory_mib),
        "iops": share(realized.iops, asked.iops),
    }


def run_full_load(
    settings: Settings,
    hv: LibvirtHypervisor,
    image: ImageFiles,
    accelerator: Accelerator,
    profile: Profile,
    load: float,
    allocation: Allocation,
    *,
    duration_s: int,
) -> FullLoadResult:
    """Boot a full VM of ``allocation``, run ``profile`` at ``load`` in it, remove it."""
    name = f"vmshadow-fullload-{uuid.uuid4().hex[:8]}"
    vm_dir = settings.vms_dir / name
    spec = FullVmSpec(
        name=name,
        transition_id=f"fullload-{name}",
        allocation=allocation,
        max_vcpus=allocation.vcpus,
        max_memory_mib=allocation.memory_mib,
        accelerator=accelerator,
        image=BuiltinImage(kernel=image.kernel, initrd=image.initrd, base=image.base),
        vm_dir=vm_dir,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        owner=f"{socket.gethostname()}:{os.getpid()}",
    )
    points: list[UsagePoint] = []
    lock = threading.Lock()

    def add(p: UsagePoint) -> None:
        with lock:
            points.append(p)

    t0 = time.monotonic()
    boot_s = run_s = 0.0
    fio_iops: float | None = None
    error: str | None = None
    sampler: HostSampler | None = None
    client: AgentClient | None = None
    try:
        hv.define_full_vm(spec)
        hv.start_full_vm(name)
        sampler = HostSampler(
            lambda: hv.counters(name),
            add,
            interval_s=settings.shadow.sample_interval_s,
            t0=t0,
        )
        sampler.start()
        client = AgentClient(hv.open_agent_channel(name))
        client.wait_hello(timeout=settings.shadow.hello_timeout_s)
        boot_s = time.monotonic() - t0
        offset = boot_s

        def guest(s: Sample) -> None:
            add(
                UsagePoint(
                    t=round(offset + s.t, 3),
                    source=Source.GUEST,
                    phase_id=s.phase_id,
                    busy_vcpus=s.cpu_busy,
                    mem_used_mib=s.mem_used_kib / 1024,
                    read_iops=s.read_iops,
                    write_iops=s.write_iops,
                    read_bps=s.read_bps,
                    write_bps=s.write_bps,
                )
            )

        started = time.monotonic()
        for phase in profile.phases(load, duration_s=duration_s, step=0, vcpus=allocation.vcpus):
            sampler.set_phase(phase.phase_id)
            try:
                result = client.run_phase(phase, on_sample=guest, timeout=duration_s * 3 + 60)
                if phase.kind == "fio":
                    fio_iops = float(result.metrics.get("read_iops", 0.0)) + float(
                        result.metrics.get("write_iops", 0.0)
                    )
            except (AgentReportedError, ProtocolError, TimeoutError) as exc:
                # A working set the VM cannot hold ends here (the OOM killer, or
                # stress-ng giving up): the load was not sustained, and why.
                error = f"phase {phase.phase_id}: {exc}"
                break
            finally:
                sampler.set_phase(None)
        run_s = time.monotonic() - started
    except (VmshadowError, TimeoutError, ProtocolError) as exc:
        error = str(exc)
    finally:
        if client is not None:
            client.close()
        if sampler is not None:
            sampler.stop()
        try:
            if hv.state(name) is not None:
                hv.remove_full_vm(name)
        finally:
            shutil.rmtree(vm_dir, ignore_errors=True)
    asked = Requirement(**profile.demand(load))
    measured = step_requirement([p for p in points if p.phase_id is not None])
    # The workload's IOPS are fio's own count: the disks' counters also carry
    # the guest reading its programs back from the root disk after the memory
    # phase pushed them out of the page cache (seen: 30-130 reads/s for the
    # first seconds of the I/O phase, against 2.5 IOPS asked).
    realized = Requirement(
        measured.vcpus, measured.memory_mib, measured.iops if fio_iops is None else fio_iops
    )
    return FullLoadResult(
        profile=profile.name,
        load=load,
        allocation=allocation,
        asked=asked,
        realized=realized,
        ratios=_ratios(asked, realized),
        boot_s=boot_s,
        run_s=run_s,
        error=error,
        vm_name=name,
        disk_iops_p95=measured.iops,
        points=points,
    )
