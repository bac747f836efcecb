"""Launch latency after confirmation: the pending VM already defined, against a
VM defined and started only at confirmation (the cold path, as the baseline).

What vmshadow does: the full VM is defined (not started) when shadowing
begins and redefined with each prediction, so at confirmation the launch step
only redefines it with the final allocation and starts it. The cold path
defines it from nothing at confirmation: its disks (a qcow2 overlay of the
base and, for the built-in image, a 1 GiB scratch disk), then the domain,
then starts it. Both are timed to "libvirt reports it running", which is when
the transition enters ``running``; the guest's own boot comes after and is
the same for both. The two are measured alternately, on the real local
hypervisor with the built-in image, each VM removed before the next.

A pre-booted, paused full VM resumed on confirmation is not implemented
(see the issue): not measured.

    .venv/bin/python bench/launch.py [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

from benchlib import Machine, accelerator_verdict, default_settings, pct, r, report, table
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import BuiltinImage, FullVmSpec
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.files import ImageFiles
from vmshadow.shadow.session import require_image

REQUESTED = Allocation(2, 1024)  # what the user asked for: the pending VM's first definition
FINAL = Allocation(1, 512, 400)  # what was confirmed


def _spec(
    name: str, a: Allocation, accel: Accelerator, image: ImageFiles, vms_dir: Path
) -> FullVmSpec:
    return FullVmSpec(
        name=name,
        transition_id=f"bench-{name}",
        allocation=a,
        max_vcpus=2,
        max_memory_mib=a.memory_mib,
        accelerator=accel,
        image=BuiltinImage(image.kernel, image.initrd, image.base),
        vm_dir=vms_dir / name,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats")
    args = ap.parse_args()
    repeats = 3 if args.quick else args.repeats
    settings = default_settings()
    accel_name, reason = accelerator_verdict(settings)
    accel = Accelerator(accel_name)
    machine = Machine(accel_name, reason)
    image = require_image(settings)

    def spec(name: str, a: Allocation) -> FullVmSpec:
        return _spec(name, a, accel, image, settings.vms_dir)

    pending: list[float] = []
    pending_define: list[float] = []
    cold: list[float] = []
    cold_define: list[float] = []
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        for _ in range(repeats):
            # vmshadow's path: defined at shadowing (not timed), launched at confirmation.
            name = f"bench-launch-{uuid.uuid4().hex[:8]}"
            try:
                hv.define_full_vm(spec(name, REQUESTED))
                t0 = time.monotonic()
                hv.define_full_vm(spec(name, FINAL))
                t1 = time.monotonic()
                hv.start_full_vm(name)
                pending.append(time.monotonic() - t0)
                pending_define.append(t1 - t0)
            finally:
                hv.remove_full_vm(name)
            # The cold path: nothing exists at confirmation.
            name = f"bench-launch-{uuid.uuid4().hex[:8]}"
            try:
                t0 = time.monotonic()
                hv.define_full_vm(spec(name, FINAL))
                t1 = time.monotonic()
                hv.start_full_vm(name)
                cold.append(time.monotonic() - t0)
                cold_define.append(t1 - t0)
            finally:
                hv.remove_full_vm(name)
    rows = [
        {
            "path": "pending VM defined ahead (vmshadow)",
            "median_s": r(statistics.median(pending), 3),
            "p90_s": r(pct(pending, 90), 3),
            "define_median_s": r(statistics.median(pending_define), 3),
        },
        {
            "path": "defined + started at confirmation (baseline)",
            "median_s": r(statistics.median(cold), 3),
            "p90_s": r(pct(cold, 90), 3),
            "define_median_s": r(statistics.median(cold_define), 3),
        },
    ]
    table(rows, ["path", "median_s", "p90_s", "define_median_s"])
    saved = statistics.median(cold) - statistics.median(pending)
    print(f"confirmation -> running, {repeats} launches each: the pending VM saves {saved:.3f} s")
    report(
        "launch",
        machine,
        {"repeats": repeats, "requested": REQUESTED.as_dict(), "final": FINAL.as_dict()},
        {
            "paths": rows,
            "saved_median_s": r(saved, 3),
            "samples_s": {"pending": pending, "cold": cold},
            "paused_preboot": "not implemented, not measured",
        },
    )


if __name__ == "__main__":
    main()
