"""Closed loop: predict with a real shadow, launch the full VM with the
recommendation, run the profile at full load in it, compare.

For each built-in profile at two loads (by default the ramp's second step,
which the shadow measures directly, and twice the ramp's top, which it must
extrapolate to): ``vmshadow plan`` with a real shadow, then a full VM of the
recommended size running the profile's phases at the full load
(:mod:`vmshadow.usecases.fullload`). Printed per case: the predicted need, the
recommendation, what the full VM really used, and the share of the load it
sustained (>= 95 % counts). The baseline beside the prediction is the
profile's own declared cost of the load, the sizing one would do without a
shadow.

    .venv/bin/python bench/closed_loop.py [--profiles web,oltp] [--phase-s 5] [--run-s 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from vmshadow.config import load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import VmshadowError
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.shadow.accelerator import accelerator_for
from vmshadow.shadow.session import require_image
from vmshadow.usecases.fullload import run_full_load
from vmshadow.usecases.plan import plan
from vmshadow.workloads.profiles import builtin_profiles, load_profile

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def fmt(req: dict[str, Any]) -> str:
    iops = req.get("iops")
    return (
        f"{req['vcpus']:.2f} vCPU {req['memory_mib']:.0f} MiB "
        f"{'-' if iops is None else f'{iops:.0f}'} IOPS"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default=",".join(sorted(builtin_profiles())))
    ap.add_argument("--phase-s", type=int, default=5, help="shadow ramp phase length")
    ap.add_argument("--run-s", type=int, default=15, help="full-load phase length in the VM")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    base = load_settings()
    settings = base.model_copy(
        update={"controller": base.controller.model_copy(update={"phase_s": args.phase_s})}
    )
    image = require_image(settings)
    cases: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []  # plans that did not reach a prediction
    started = time.monotonic()
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        accel = accelerator_for(hv, image, settings).accelerator
        for name in args.profiles.split(","):
            profile = load_profile(name)
            for load in (profile.ramp[1], 2 * profile.ramp[-1]):
                try:
                    doc = plan(settings, name, load, connect=LibvirtHypervisor)
                except VmshadowError as exc:
                    # A failed shadow is a figure too: say so and go on.
                    print(f"{name:9} {load:>7g} {profile.unit:14} plan FAILED: {exc}", flush=True)
                    failed.append({"profile": name, "load": load, "error": str(exc)})
                    continue
                pred = doc["prediction"]
                rec = pred["recommended"]
                alloc = Allocation(rec["vcpus"], rec["memory_mib"], rec.get("iops"))
                res = run_full_load(
                    settings,
                    hv,
                    image,
                    accel,
                    profile,
                    load,
                    alloc,
                    duration_s=args.run_s,
                )
                case = {
                    "profile": name,
                    "unit": profile.unit,
                    "load": load,
                    "predicted": pred["median"],
                    "method": pred["method"],
                    "plan_s": doc["timings"]["total_s"],
                    **res.as_dict(),
                }
                cases.append(case)
                print(
                    f"{name:9} {load:>7g} {profile.unit:14} predicted {fmt(pred['median'])} | "
                    f"declared {fmt(case['asked'])} | recommended {fmt(rec)} | "
                    f"realized {fmt(case['realized'])} | host queueing "
                    f"{res.host_wait_vcpus:.2f} vCPU | sustained "
                    f"{100 * min(1.0, min(res.ratios.values())):.0f}% "
                    f"{'ok' if res.sustained else 'SHORT'}"
                    + (f" ({res.error})" if res.error else ""),
                    flush=True,
                )
    ok = sum(1 for c in cases if c["sustained"])
    ratio = {
        r: statistics.median(
            c["realized"][r] / c["predicted"][r] for c in cases if c["predicted"][r]
        )
        for r in ("vcpus", "memory_mib", "iops")
        if any(c["predicted"][r] for c in cases)
    }
    summary = {
        "machine": machine(),
        "accelerator": accel.value,
        "cases": cases,
        "sustained": f"{ok}/{len(cases)}",
        "plans_failed": failed,
        "median_realized_over_predicted": {k: round(v, 3) for k, v in ratio.items()},
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(
        f"\nsustained >= 95 %: {ok}/{len(cases)}; median realized/predicted: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items())
        + f"\n{summary['machine']}, accelerator {accel.value}, {summary['wall_s']} s"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "closed_loop.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
