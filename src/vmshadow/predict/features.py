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

Every figure is per second of real time, whatever the sampling interval (sar
every 1 s or 10 s, the agent every 0.2 s to 10 s): durations come from the
samples' timestamps, percentiles, means and shares are weighted by the time each
sample speaks for, and totals are a mean rate times the duration, never a sum
over samples (see :mod:`vmshadow.predict.sar`). At one sample per second this is
what the features always were, so models trained before still apply. Averaging
over a longer interval blurs short peaks; the test on resampled Lumos runs
(``tests/unit/predict/test_resample.py``) bounds what that costs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.sar import (
    Floats,
    UsageSeries,
    duration_of,
    interval_of,
    weights_of,
    wmean,
    wpercentile,
)

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


def _log1p(v: float) -> float:
    return math.log1p(max(v, 0.0)) if math.isfinite(v) else math.nan


def _activity(name: str, v: Floats, series: UsageSeries) -> dict[str, float]:
    """P50, P95 and total of a per-second rate (log), NaN when not measured. The
    total is the mean rate over the time measured times that time."""
    if not v.size:
        return dict.fromkeys((f"{name}_p50_log", f"{name}_p95_log", f"{name}_total_log"), math.nan)
    t = series.activity_times
    w = series.weights(t)
    return {
        f"{name}_p50_log": _log1p(wpercentile(v, w, 50)),
        f"{name}_p95_log": _log1p(wpercentile(v, w, 95)),
        f"{name}_total_log": _log1p(wmean(v, w) * series.duration(t)),
    }


def _ends(mem: Floats, t: Floats, step_s: float | None) -> tuple[float, float]:
    """Mean memory over the first and the last tenth of the time measured (at
    least one sample each). A sample belongs to the first tenth when its interval
    ends in it, to the last when its interval starts in it: at one sample per
    second that is the first and last n // 10 samples, as before timestamps."""
    step = interval_of(t) if step_s is None else step_s
    span = duration_of(t, step)
    if not math.isfinite(span):
        return float(mem[0]), float(mem[-1])
    fuzz = step * 1e-6
    head = t - (t[0] - step) <= span / 10 + fuzz
    tail = t - step >= t[-1] - span / 10 - fuzz
    head[0] = tail[-1] = True
    w = weights_of(t, step)
    return wmean(mem[head], w[head]), wmean(mem[tail], w[tail])


def shadow_features(series: UsageSeries, memory_mib: int) -> dict[str, float]:
    """Summaries of one run on the shadow; CPU as a share of the shadow's vCPUs."""
    w = series.weights()
    cpu = series.busy_vcpus / max(series.vcpus, 1)
    mem, mem_w = series.mem_used_mib, series.weights(series.mem_times)
    io = series.iops
    # Bytes per request and the write share are ratios of totals over the same
    # time, so the duration cancels out: time-weighted means suffice.
    moved = wmean(series.read_bps + series.write_bps, w)
    ios = wmean(io, w)
    writes = wmean(series.write_iops, w)
    reads = wmean(series.read_iops, w)
    peak = float(np.max(mem)) if mem.size else math.nan
    head, tail = _ends(mem, series.mem_times, series.step_s) if mem.size else (math.nan, math.nan)
    return {
        "cpu_p50": wpercentile(cpu, w, 50),
        "cpu_p95": wpercentile(cpu, w, 95),
        "cpu_mean": wmean(cpu, w),
        "cpu_saturated": wmean((cpu >= SATURATED).astype(np.float64), w),
        "cpu_busy_half": wmean((cpu >= 0.5).astype(np.float64), w),
        "mem_peak_log": math.log1p(peak),
        "mem_mean_log": math.log1p(wmean(mem, mem_w)),
        "mem_fill": peak / memory_mib if memory_mib else math.nan,
        "mem_growth": (tail - head) / peak if peak > 0 else 0.0,
        "iops_p95_log": math.log1p(wpercentile(io, w, 95)),
        "iops_p50_log": math.log1p(wpercentile(io, w, 50)),
        "iops_mean_log": math.log1p(ios),
        "iops_write_share": writes / (reads + writes) if reads + writes > 0 else 0.0,
        "bytes_per_io_log": math.log1p(moved / ios) if ios > 0 else 0.0,
        "seconds_log": _log1p(series.seconds),
        **_activity("forks", series.forks, series),
        **_activity("faults", series.faults, series),
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
    started and page faults only the guest can see. Each view keeps its own
    timestamps (``UsagePoint.t``), as the host and the guest sample apart."""
    ordered = sorted(points, key=lambda p: p.t)
    host = [p for p in ordered if p.source is Source.HOST] or ordered
    guest = [p for p in ordered if p.source is Source.GUEST and p.mem_used_mib is not None]
    mem_pts = guest or [p for p in host if p.mem_used_mib is not None]
    act_pts = [p for p in ordered if p.forks_ps is not None and p.faults_ps is not None]

    def arr(values: list[float]) -> Floats:
        return np.asarray(values, dtype=np.float64)

    return UsageSeries(
        vcpus=vcpus,
        t=arr([p.t for p in host]),
        busy_vcpus=arr([p.busy_vcpus for p in host]),
        mem_used_mib=arr([float(p.mem_used_mib or 0.0) for p in mem_pts]),
        mem_t=arr([p.t for p in mem_pts]),
        read_iops=arr([p.read_iops for p in host]),
        write_iops=arr([p.write_iops for p in host]),
        iops=arr([p.iops for p in host]),
        read_bps=arr([p.read_bps for p in host]),
        write_bps=arr([p.write_bps for p in host]),
        forks=arr([p.forks_ps or 0.0 for p in act_pts]),
        faults=arr([p.faults_ps or 0.0 for p in act_pts]),
        act_t=arr([p.t for p in act_pts]),
    )
