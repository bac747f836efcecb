"""What the models see: features of a shadow run and of the two sizes.

Only what a vmshadow shadow measures of itself goes in (busy vCPUs, memory
used, read/write IOPS and bytes per second), so that a model trained on
imported ``sar`` history can be used on a live shadow. Shapes of the
distributions matter more than the peaks: a small VM's CPU is capped by its
vCPUs, so how much of the run was spent saturated says how far usage may grow
on a larger VM. How the work is done helps too: a shadow whose vCPUs are full
cannot show how many cores a job would use, but the processes it starts (a job
that forks a worker per task) and the memory it touches (page faults) say how
much work there is to spread. On Lumos they took the held-out vCPU figures
(calibrated margin) from 4.7 % under / 18.0 % waste to 3.6 % / 14.4 %, and
4.9 % / 13.6 % with the margin calibrated on 8 folds instead of 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.sar import Floats, UsageSeries

SATURATED = 0.9  # share of the vCPUs above which a second counts as saturated

SHADOW_FEATURES = (
    "cpu_p50",
    "cpu_p95",
    "cpu_mean",
    "cpu_saturated",
    "cpu_busy_half",
    "mem_peak_log",
    "mem_mean_log",
    "mem_fill",
    "mem_growth",
    "iops_p95_log",
    "iops_p50_log",
    "iops_mean_log",
    "iops_write_share",
    "bytes_per_io_log",
    "seconds_log",
    "forks_p50_log",
    "forks_p95_log",
    "forks_total_log",
    "faults_p50_log",
    "faults_p95_log",
    "faults_total_log",
)
SIZE_FEATURES = (
    "shadow_vcpus",
    "shadow_memory_gib",
    "target_vcpus",
    "target_memory_gib",
    "vcpu_ratio_log",
    "memory_ratio_log",
)
FEATURES = SHADOW_FEATURES + SIZE_FEATURES


def _p(v: Floats, q: float) -> float:
    return float(np.percentile(v, q)) if v.size else math.nan


def _mean(v: Floats) -> float:
    return float(np.mean(v)) if v.size else math.nan


def _log1p(v: float) -> float:
    return math.log1p(max(v, 0.0)) if math.isfinite(v) else math.nan


def _activity(name: str, v: Floats) -> dict[str, float]:
    """P50, P95 and total of a per-second rate (log), NaN when not measured."""
    total = float(np.sum(v)) if v.size else math.nan
    return {
        f"{name}_p50_log": _log1p(_p(v, 50)),
        f"{name}_p95_log": _log1p(_p(v, 95)),
        f"{name}_total_log": _log1p(total),
    }


def shadow_features(series: UsageSeries, memory_mib: int) -> dict[str, float]:
    """Summaries of one run on the shadow; CPU as a share of the shadow's vCPUs."""
    cpu = series.busy_vcpus / max(series.vcpus, 1)
    mem = series.mem_used_mib
    io = series.iops
    moved = float(np.sum(series.read_bps + series.write_bps))
    ios = float(np.sum(io))
    writes = float(np.sum(series.write_iops))
    reads = float(np.sum(series.read_iops))
    head = mem[: max(1, mem.size // 10)]
    tail = mem[-max(1, mem.size // 10) :]
    peak = float(np.max(mem)) if mem.size else math.nan
    return {
        "cpu_p50": _p(cpu, 50),
        "cpu_p95": _p(cpu, 95),
        "cpu_mean": _mean(cpu),
        "cpu_saturated": _mean((cpu >= SATURATED).astype(np.float64)),
        "cpu_busy_half": _mean((cpu >= 0.5).astype(np.float64)),
        "mem_peak_log": math.log1p(peak),
        "mem_mean_log": math.log1p(_mean(mem)),
        "mem_fill": peak / memory_mib if memory_mib else math.nan,
        "mem_growth": (_mean(tail) - _mean(head)) / peak if peak > 0 else 0.0,
        "iops_p95_log": math.log1p(_p(io, 95)),
        "iops_p50_log": math.log1p(_p(io, 50)),
        "iops_mean_log": math.log1p(_mean(io)),
        "iops_write_share": writes / (reads + writes) if reads + writes > 0 else 0.0,
        "bytes_per_io_log": math.log1p(moved / ios) if ios > 0 else 0.0,
        "seconds_log": math.log1p(series.seconds),
        **_activity("forks", series.forks),
        **_activity("faults", series.faults),
    }


def feature_row(
    shadow: Mapping[str, float],
    *,
    shadow_vcpus: int,
    shadow_memory_mib: int,
    target_vcpus: int,
    target_memory_mib: int,
) -> list[float]:
    """One row in the order of :data:`FEATURES`; a feature the shadow lacks is NaN
    (the gradient-boosted trees route missing values on their own)."""
    row = [float(shadow.get(name, math.nan)) for name in SHADOW_FEATURES]
    return [
        *row,
        float(shadow_vcpus),
        shadow_memory_mib / 1024,
        float(target_vcpus),
        target_memory_mib / 1024,
        math.log(target_vcpus / shadow_vcpus),
        math.log(target_memory_mib / shadow_memory_mib),
    ]


def series_from_points(points: Sequence[UsagePoint], vcpus: int) -> UsageSeries:
    """A shadow's samples as a series: CPU and I/O from the host view (it does not
    trust the guest), memory from the guest's own view, else the host's; processes
    started and page faults only the guest can see."""
    host = [p for p in points if p.source is Source.HOST] or list(points)
    guest = [p for p in points if p.source is Source.GUEST and p.mem_used_mib is not None]
    mem_pts = guest or [p for p in host if p.mem_used_mib is not None]

    def arr(values: list[float]) -> Floats:
        return np.asarray(values, dtype=np.float64)

    return UsageSeries(
        vcpus=vcpus,
        busy_vcpus=arr([p.busy_vcpus for p in host]),
        mem_used_mib=arr([float(p.mem_used_mib or 0.0) for p in mem_pts]),
        read_iops=arr([p.read_iops for p in host]),
        write_iops=arr([p.write_iops for p in host]),
        iops=arr([p.iops for p in host]),
        read_bps=arr([p.read_bps for p in host]),
        write_bps=arr([p.write_bps for p in host]),
        forks=arr([p.forks_ps for p in points if p.forks_ps is not None]),
        faults=arr([p.faults_ps for p in points if p.faults_ps is not None]),
    )
