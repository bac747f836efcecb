"""Phase length: does a shorter shadow phase change the recommendation?

The time to a recommendation is mostly the ramp (up to 4 steps of 3 phases),
so the phase length sets it: ~112 s at 8 s phases, ~52 s at 3 s under TCG.
Shorter phases hold fewer 1 s samples per P95, so the question is what they
cost in the answer. For each built-in profile at the README's load, this
runs ``vmshadow plan`` (a real shadow, the ramp extrapolation) at each phase
length, alternating the lengths run after run so that drift on a shared host
falls on both alike, and prints per length: time to the answer, the
recommended vCPUs / memory / IOPS of every run, and the spread of the
estimated need (max / min over the runs). The baseline is the longest
length, measured in the same run.

    .venv/bin/python bench/phase_length.py [--lengths 3,8] [--repeats 3] [--profiles web,oltp]
    ./scripts/bench phase_length        (not in the default set: ~40 min under TCG)
"""

from __future__ import annotations

import argparse
import statistics
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
from recommend import LOADS
from vmshadow.domain.errors import VmshadowError
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.usecases.plan import plan

NEED = ("vcpus", "memory_mib", "iops")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="3,8", help="phase lengths in seconds, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profiles", default=",".join(LOADS), help="comma-separated")
    ap.add_argument("--quick", action="store_true", help="web only, 1 repeat")
    args = ap.parse_args()
    lengths = sorted({int(x) for x in args.lengths.split(",")})
    profiles = args.profiles.split(",")
    if args.quick:
        profiles, args.repeats = ["web"], 1
    base = default_settings()
    accel, reason = accelerator_verdict(base)
    machine = Machine(accel, reason)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    failures: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        with private_data_dir(base) as data_dir:
            for profile in profiles:
                for i in range(args.repeats):
                    # Alternate the order too: 3,8 then 8,3, so neither always goes first.
                    for phase_s in lengths if i % 2 == 0 else reversed(lengths):
                        settings = bench_settings(
                            data_dir, base, accelerator=accel, controller__phase_s=phase_s
                        )
                        try:
                            doc = plan(settings, profile, LOADS[profile], connect=LibvirtHypervisor)
                        except VmshadowError as exc:
                            failures.append(f"{profile} at {phase_s} s: {exc}")
                            print(f"  {profile} {phase_s} s: FAILED {exc}", flush=True)
                            continue
                        got = _run(doc)
                        runs.setdefault((profile, phase_s), []).append(got)
                        print(
                            f"  {profile} {phase_s} s: {got['total_s']:.1f} s, need "
                            f"{got['need']}, recommended {got['recommended']}",
                            flush=True,
                        )
        longest = lengths[-1]
        for profile in profiles:
            for phase_s in lengths:
                got_runs = runs.get((profile, phase_s), [])
                if got_runs:
                    rows.append(_row(profile, phase_s, got_runs, runs.get((profile, longest), [])))
    finally:
        table(
            rows,
            [
                "profile",
                "phase_s",
                "runs",
                "to_answer_median_s",
                "recommended_vcpus",
                "recommended_memory_mib",
                "recommended_iops",
                "vcpus_spread",
                "memory_spread",
                "iops_spread",
                "vcpus_vs_longest",
                "memory_vs_longest",
                "iops_vs_longest",
            ],
        )
        print(
            "spread: max / min of the estimated need over the runs; vs_longest: median need "
            f"at this length / median need at {lengths[-1]} s (the baseline)"
        )
        for f in failures:
            print(f"failed: {f}")
        report(
            "phase_length",
            machine,
            {"lengths": lengths, "repeats": args.repeats, "profiles": profiles, "loads": LOADS},
            {"rows": rows, "failures": failures},
        )


def _run(doc: dict[str, Any]) -> dict[str, Any]:
    pred = doc["prediction"]
    need = {k: float(pred["median"][k] or 0.0) for k in NEED}
    return {
        "total_s": float(doc["timings"]["total_s"]),
        "need": {k: round(v, 3) for k, v in need.items()},
        "recommended": pred["recommended"],
        "method": pred["method"],
    }


def _spread(values: list[float]) -> float | None:
    return r(max(values) / min(values)) if values and min(values) > 0 else None


def _row(
    profile: str, phase_s: int, got: list[dict[str, Any]], longest: list[dict[str, Any]]
) -> dict[str, Any]:
    def needs(rs: list[dict[str, Any]], k: str) -> list[float]:
        return [x["need"][k] for x in rs]

    def vs(k: str) -> float | None:
        a, b = needs(got, k), needs(longest, k)
        if not a or not b or statistics.median(b) <= 0:
            return None
        return r(statistics.median(a) / statistics.median(b))

    def recs(k: str) -> str:
        return "/".join(str(x["recommended"].get(k)) for x in got)

    return {
        "profile": profile,
        "phase_s": phase_s,
        "runs": len(got),
        "to_answer_median_s": r(statistics.median(x["total_s"] for x in got), 1),
        "recommended_vcpus": recs("vcpus"),
        "recommended_memory_mib": recs("memory_mib"),
        "recommended_iops": recs("iops"),
        "vcpus_spread": _spread(needs(got, "vcpus")),
        "memory_spread": _spread(needs(got, "memory_mib")),
        "iops_spread": _spread(needs(got, "iops")),
        "vcpus_vs_longest": vs("vcpus"),
        "memory_vs_longest": vs("memory_mib"),
        "iops_vs_longest": vs("iops"),
        "runs_detail": got,
    }


if __name__ == "__main__":
    main()
