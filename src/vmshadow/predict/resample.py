"""A series as if it had been sampled every ``step_s`` seconds.

What sar (or the agent) would have written at a longer interval: each new
sample covers ``(end - step_s, end]``; rates (CPU, I/O, processes started,
page faults) are the time-weighted mean of the samples whose intervals end in
it, as a counter read at both ends gives; gauges (memory used) are the last
value in it, as a reading at that instant gives. An interval without samples
(a gap) yields none. Used to check that features do not depend on the sampling
interval, and to try a model on data sampled unlike its history.
"""

from __future__ import annotations

import math

import numpy as np

from vmshadow.predict.sar import Floats, UsageSeries


def _bins(t: Floats, start: float, step_s: float) -> tuple[Floats, Floats]:
    """Each sample's bin index, and the end time of each non-empty bin. The last
    bin ends with the last sample (the run stopped there, mid-bin), so the
    resampled run lasts as long as the original."""
    # A sample whose interval ends exactly on a bin's end belongs to that bin;
    # the fuzz keeps float error from pushing it into the next.
    idx = np.maximum(np.ceil((t - start) / step_s - 1e-9) - 1, 0)
    ends = start + (np.unique(idx) + 1) * step_s
    if ends.size:
        ends[-1] = min(ends[-1], float(t[-1]))
    return idx, ends


def _rates(v: Floats, w: Floats, idx: Floats) -> Floats:
    keys = np.unique(idx)
    pos = np.searchsorted(keys, idx)
    total = np.bincount(pos, weights=v * w, minlength=keys.size)
    time = np.bincount(pos, weights=w, minlength=keys.size)
    plain = np.bincount(pos, weights=v, minlength=keys.size) / np.bincount(pos, minlength=keys.size)
    # A bin whose samples all speak for no time (repeated timestamps) keeps
    # their plain mean.
    return np.where(time > 0, total / np.where(time > 0, time, 1.0), plain)


def _last(v: Floats, idx: Floats) -> Floats:
    keys = np.unique(idx)
    # The last sample of each bin: where the next sample's bin differs.
    last = np.flatnonzero(np.append(idx[1:] != idx[:-1], True))
    assert last.size == keys.size
    return v[last]


def resample(series: UsageSeries, step_s: float) -> UsageSeries:
    """The same run at one sample per ``step_s`` seconds (see the module's doc).
    Bins start one interval before the first sample, where its interval began;
    the last is cut short where the run ended.

    Raises ValueError for a step that is not a positive number of seconds."""
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be a positive number of seconds, got {step_s}")
    t = series.t
    step0 = series.interval_s
    start = float(t[0] - (step0 if math.isfinite(step0) else 0.0)) if t.size else 0.0
    idx, new_t = _bins(t, start, step_s)
    w = series.weights()

    def rate(v: Floats) -> Floats:
        return _rates(v, w, idx)

    mem_t = series.mem_times
    mem_idx, new_mem_t = _bins(mem_t, start, step_s)
    act_t = series.activity_times
    if series.forks.size or series.faults.size:
        act_idx, new_act_t = _bins(act_t, start, step_s)
        act_w = series.weights(act_t)
    else:
        act_idx, new_act_t, act_w = act_t, act_t, act_t

    def act(v: Floats) -> Floats:
        return _rates(v, act_w, act_idx) if v.size else v

    return UsageSeries(
        vcpus=series.vcpus,
        t=new_t,
        busy_vcpus=rate(series.busy_vcpus),
        mem_used_mib=_last(series.mem_used_mib, mem_idx) if mem_t.size else mem_t,
        mem_t=new_mem_t,
        read_iops=rate(series.read_iops),
        write_iops=rate(series.write_iops),
        iops=rate(series.iops),
        read_bps=rate(series.read_bps),
        write_bps=rate(series.write_bps),
        forks=act(series.forks),
        faults=act(series.faults),
        act_t=new_act_t,
        step_s=step_s,
    )
