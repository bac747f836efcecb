"""Shadow footprint on the host: QEMU's resident memory and CPU time, the base
image, and the per-shadow disks, for N shadows running the smoke profile.

Read from the QEMU process libvirt started (its pid in
``/var/run/libvirt/qemu/<name>.pid``): ``VmRSS`` and ``VmHWM`` from
``/proc/<pid>/status``, user + system CPU seconds from ``/proc/<pid>/stat``.
Disk sizes are blocks actually allocated (``du``), beside the apparent size.
Libvirt's own view is printed next to it as a cross-check: ``balloon.rss``
peak and ``cpu.time`` as the session's host sampler saw them.

Baseline, measured in the same run on the same shadows: the idle shadow at
agent-ready (boot cost only), before the profile runs.

    .venv/bin/python bench/footprint.py [--shadows 3] [--phase-s 8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path
from typing import Any

from benchlib import (
    Machine,
    accelerator_verdict,
    bench_settings,
    default_settings,
    private_data_dir,
    r,
    report,
    table,
)
from vmshadow.domain.shadow import Accelerator
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.shadow.session import ShadowSession, require_image
from vmshadow.workloads.catalog import SMOKE, phases_for

PID_DIR = Path("/var/run/libvirt/qemu")
MIB = 2**20


def qemu_pid(name: str) -> int:
    return int((PID_DIR / f"{name}.pid").read_text().strip())


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_cpu_s(pid: int) -> float:
    # Fields after the command name, which is in parentheses and may hold spaces.
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def allocated_mib(path: Path) -> float:
    return path.stat().st_blocks * 512 / MIB


def snapshot(session: ShadowSession, pid: int) -> dict[str, float]:
    spec = session.spec
    return {
        "rss_mib": proc_status_kib(pid, "VmRSS") / 1024,
        "hwm_mib": proc_status_kib(pid, "VmHWM") / 1024,
        "cpu_s": proc_cpu_s(pid),
        "overlay_mib": allocated_mib(spec.root_disk),
        "scratch_mib": allocated_mib(spec.scratch_disk),
        "scratch_apparent_mib": spec.scratch_disk.stat().st_size / MIB,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shadows", type=int, default=3)
    ap.add_argument("--phase-s", type=int, default=8, help="seconds per smoke phase")
    ap.add_argument("--quick", action="store_true", help="1 shadow, 3 s phases")
    args = ap.parse_args()
    shadows, phase_s = (1, 3) if args.quick else (args.shadows, args.phase_s)
    base = default_settings()
    accel, reason = accelerator_verdict(base)
    machine = Machine(accel, reason)
    image = require_image(base)
    runs: list[dict[str, Any]] = []
    with private_data_dir(base) as data_dir, LibvirtHypervisor(base.libvirt_uri) as hv:
        settings = bench_settings(data_dir, base)
        for i in range(shadows):
            with ShadowSession(
                hv,
                image,
                settings.runs_dir,
                accelerator=Accelerator(accel),
                scratch_cache=settings.shadow.scratch_cache,
            ) as session:
                pid = qemu_pid(session.name)
                idle = snapshot(session, pid)
                for spec in phases_for(SMOKE, duration_s=phase_s):
                    session.run_phase(spec)
                busy = snapshot(session, pid)
            runs.append(
                {
                    "idle": idle,
                    "after_profile": busy,
                    "libvirt_peak_rss_mib": session.record.peak_qemu_rss_kib / 1024,
                    "libvirt_cpu_s": session.record.qemu_cpu_s,
                    "agent_ready_s": session.record.timings.agent_ready_s,
                }
            )
            print(
                f"  shadow {i + 1}: RSS {idle['rss_mib']:.0f} -> {busy['rss_mib']:.0f} MiB, "
                f"CPU {idle['cpu_s']:.1f} -> {busy['cpu_s']:.1f} s",
                flush=True,
            )

    def med(when: str, key: str) -> float:
        return float(statistics.median(run[when][key] for run in runs))

    rows = []
    for key, label in [
        ("rss_mib", "QEMU RSS, MiB"),
        ("hwm_mib", "QEMU peak RSS (VmHWM), MiB"),
        ("cpu_s", "QEMU CPU since start, s"),
        ("overlay_mib", "root overlay allocated, MiB"),
        ("scratch_mib", "scratch disk allocated, MiB"),
    ]:
        rows.append(
            {
                "figure": label,
                "idle_at_agent_ready (baseline)": r(med("idle", key), 1),
                "after_smoke_profile": r(med("after_profile", key), 1),
            }
        )
    table(rows, ["figure", "idle_at_agent_ready (baseline)", "after_smoke_profile"])
    images = {
        "kernel_mib": image.kernel.stat().st_size / MIB,
        "initrd_mib": image.initrd.stat().st_size / MIB,
        "base_qcow2_mib": image.base.stat().st_size / MIB,
        "total_mib": image.size_bytes() / MIB,
    }
    lv_rss = statistics.median(x["libvirt_peak_rss_mib"] for x in runs)
    lv_cpu = [x["libvirt_cpu_s"] for x in runs if x["libvirt_cpu_s"] is not None]
    profile_cpu = statistics.median(x["after_profile"]["cpu_s"] - x["idle"]["cpu_s"] for x in runs)
    print(
        f"base image (shared by every shadow): {images['total_mib']:.1f} MiB "
        f"(kernel {images['kernel_mib']:.1f}, initrd {images['initrd_mib']:.1f}, "
        f"base qcow2 {images['base_qcow2_mib']:.1f})"
    )
    print(
        f"per shadow ({shadows}, smoke profile, {phase_s} s phases): host CPU "
        f"{med('after_profile', 'cpu_s'):.1f} s, of which boot {med('idle', 'cpu_s'):.1f} s "
        f"and profile {profile_cpu:.1f} s; libvirt's view: peak balloon.rss {lv_rss:.0f} MiB, "
        f"cpu.time {statistics.median(lv_cpu) if lv_cpu else float('nan'):.1f} s"
    )
    report(
        "footprint",
        machine,
        {"shadows": shadows, "phase_s": phase_s, "profile": SMOKE},
        {
            "medians": rows,
            "image": {k: r(v, 1) for k, v in images.items()},
            "libvirt_peak_rss_mib": r(lv_rss, 1),
            "libvirt_cpu_s": r(statistics.median(lv_cpu), 1) if lv_cpu else None,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
