"""IOPS as a cap: libvirt's ``<iotune>`` rate and burst, replayed and recommended.

libvirt caps a disk's I/O with ``total_iops_sec`` (the rate),
``total_iops_sec_max`` (the burst rate) and ``total_iops_sec_max_length`` (how
many seconds the burst may last). QEMU enforces them with two leaky buckets
(``util/throttle.c``, ``throttle_compute_wait``):

- the main bucket holds ``max x max_length`` I/Os and leaks at the rate: while it
  is not full, I/O goes through at up to the burst rate; once full, at the rate;
  without a burst rate it holds ``rate / 10`` (QEMU's default, so that short
  bursts still pass);
- with a length above 1 s, a burst bucket of ``max / 10`` I/Os leaking at the
  burst rate holds I/O to the burst rate.

:func:`replay` runs a measured IOPS series through these buckets as a fluid:
each sample's I/Os arrive evenly over the interval it speaks for (from the
timestamps, :func:`vmshadow.predict.sar.weights_of`, never from how many
samples there are), those not let through wait in a first-in-first-out queue.
It reports the share of I/Os that had to wait and the unused share of the rate
(the time-weighted mean of ``max(0, rate - served) / rate``). What happens
inside one sample's interval is not seen: a 1 s series hides sub-second
bursts, so the figures are a lower bound on waiting.

:func:`recommend_bucket` chooses the burst and its length for a rate
recommended elsewhere (a P95-style need times a margin), from the shadow's own
I/O series when there is one. The rule, the same for every workload:

- the scale is the one the need implies: ``need / (the shadow's P95 IOPS)``;
- the burst rate is the shadow's peak scaled the same way, times the margin:
  ``rate x peak / P95``, between :data:`MIN_PEAK_RATIO` and
  :data:`MAX_PEAK_RATIO` times the rate; without a series (or a P95 of 0),
  :data:`MIN_PEAK_RATIO` times it;
- the length is how long the burst rate must last to hold the largest backlog
  the shadow's series, scaled, would pile up above the rate (the fullest an
  unbounded main bucket gets), in whole seconds, between :data:`MIN_BURST_S`
  and :data:`MAX_BURST_S`; :data:`MIN_BURST_S` also without a series.

The floors are there because the full VM's run is not the shadow's. Sampled
every second, a full VM's peak is not its shadow's peak scaled: on lumos-aws a
tenth of full-VM runs peak above 10x their own P95, and the shadow's ratio
hardly tells which (bursts from the shadow's ratio alone, capped at 10x, left
more than 1 % of the I/Os waiting in 22 % of cases even at a rate of the full
VM's own P95 x1.2; at least 10x, 2.6 %). The rate, refilling the bucket,
still bounds the I/O over time: the burst only lends it ahead.

Example:

>>> shadow = [(float(t), 40.0) for t in range(1, 21)] + [(21.0, 400.0)]
>>> b = recommend_bucket(100.0, 1.2, shadow)
>>> (b.rate, b.burst, b.burst_s)
(120, 1200, 3)
>>> replay([1.0, 2.0, 3.0], [100.0, 100.0, 300.0], b).waited
0.0
>>> replay([1.0, 2.0, 3.0], [100.0, 100.0, 300.0], Bucket(120)).waited
0.336
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vmshadow.domain.prediction import Requirement
from vmshadow.predict.sar import Floats, weights_of, wpercentile

# The burst rate's bounds, as multiples of the rate (see the module's doc for
# the floor). The ceiling: one wild sample on the shadow should not open the
# cap further; 30x is the ratio of AWS gp2's 3,000 IOPS burst to its smallest
# volumes' 100 IOPS baseline.
MIN_PEAK_RATIO = 10.0
MAX_PEAK_RATIO = 30.0
MIN_BURST_S = 3
MAX_BURST_S = 60
# QEMU's main bucket without a burst rate: a tenth of a second at the rate.
NO_BURST_BUCKET_S = 0.1
# QEMU's burst bucket (length above 1 s): a tenth of a second at the burst rate.
BURST_BUCKET_S = 0.1
IOPS_STEP = 10  # rates and bursts are rounded up to it, as a Prediction's IOPS are


@dataclass(frozen=True)
class Bucket:
    """One disk's ``<iotune>`` IOPS settings (``burst=None``: no burst rate)."""

    rate: float  # total_iops_sec
    burst: float | None = None  # total_iops_sec_max
    burst_s: int = 1  # total_iops_sec_max_length

    def __post_init__(self) -> None:
        # QEMU's throttle_is_valid() refuses these; so does the replay.
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.burst is not None and self.burst < self.rate:
            raise ValueError(f"burst {self.burst} is below the rate {self.rate}")
        if self.burst_s < 1 or (self.burst_s > 1 and self.burst is None):
            raise ValueError(f"burst length {self.burst_s} s needs a burst rate and >= 1 s")

    @property
    def capacity(self) -> float:
        """I/Os the main bucket holds before throttling to the rate."""
        if self.burst is None:
            return self.rate * NO_BURST_BUCKET_S
        return self.burst * self.burst_s


@dataclass(frozen=True)
class Replayed:
    """How a series fared through a bucket."""

    waited: float  # share of the I/Os that waited (0 when there was no I/O)
    unused: float  # time-weighted mean of max(0, rate - served) / rate
    ios: float  # I/Os in the series
    seconds: float  # time the series covers


def replay(t: Sequence[float] | Floats, iops: Sequence[float] | Floats, bucket: Bucket) -> Replayed:
    """Run ``iops`` (a rate per sample, each ending at ``t``) through ``bucket``."""
    ts = np.asarray(t, dtype=np.float64)
    xs = np.asarray(iops, dtype=np.float64)
    if ts.size != xs.size:
        raise ValueError(f"{ts.size} timestamps for {xs.size} values")
    if ts.size == 0:
        return Replayed(0.0, 1.0, 0.0, 0.0)
    dts = weights_of(ts) if ts.size > 1 else np.ones(1)
    rate, cap = bucket.rate, bucket.capacity
    peak = bucket.burst if bucket.burst is not None and bucket.burst_s > 1 else None
    peak_cap = (peak or 0.0) * BURST_BUCKET_S
    level = burst_level = queue = 0.0
    waited = total = unused = seconds = 0.0
    for dt, x in zip(dts.tolist(), np.maximum(xs, 0.0).tolist(), strict=True):
        arrived = x * dt
        room = rate * dt + cap - level
        if peak is not None:
            room = min(room, peak * dt + peak_cap - burst_level)
        served = min(arrived + queue, max(room, 0.0))
        # First in, first out: the queue is served first; the arrivals not
        # served within their own interval are the ones that waited.
        waited += arrived - max(0.0, served - queue)
        queue += arrived - served
        level = max(0.0, level + served - rate * dt)
        if peak is not None:
            burst_level = max(0.0, burst_level + served - peak * dt)
        total += arrived
        if dt > 0:
            unused += max(0.0, rate * dt - served)
            seconds += dt
    return Replayed(
        waited=waited / total if total > 0 else 0.0,
        unused=unused / (rate * seconds) if seconds > 0 else 1.0,
        ios=total,
        seconds=seconds,
    )


def _step_up(v: float) -> int:
    return max(IOPS_STEP, math.ceil(v / IOPS_STEP - 1e-9) * IOPS_STEP)


def largest_backlog(t: Floats, iops: Floats, rate: float) -> float:
    """The most I/Os the series piles up above ``rate`` (an unbounded bucket
    leaking at the rate: the fullest it gets)."""
    dts = weights_of(t) if t.size > 1 else np.ones(t.size)
    level = most = 0.0
    for dt, x in zip(dts.tolist(), iops.tolist(), strict=True):
        level = max(0.0, level + (x - rate) * dt)
        most = max(most, level)
    return most


def recommend_bucket(
    need: Requirement | float,
    margin: float = 1.0,
    samples: Sequence[tuple[float, float]] | None = None,
) -> Bucket:
    """The rate (``need x margin``, IOPS rounded up to the next 10), burst rate
    and burst length for a VM whose IOPS need is ``need`` (a Requirement's
    ``iops``, or the number), from the shadow's ``(t, iops)`` samples when
    known; the rule is in the module's doc.

    Raises ValueError for a negative need or a margin below 1."""
    p95_need = need.iops if isinstance(need, Requirement) else float(need)
    if not (math.isfinite(p95_need) and p95_need >= 0):
        raise ValueError(f"need must be a finite IOPS figure >= 0, got {p95_need}")
    if not margin >= 1:
        raise ValueError(f"margin must be >= 1, got {margin}")
    exact = max(p95_need * margin, float(IOPS_STEP))
    rate = _step_up(exact)
    ratio, burst_s = MIN_PEAK_RATIO, MIN_BURST_S
    if samples:
        t = np.asarray([s[0] for s in samples], dtype=np.float64)
        x = np.maximum(np.asarray([s[1] for s in samples], dtype=np.float64), 0.0)
        order = np.argsort(t, kind="stable")
        t, x = t[order], x[order]
        p95 = wpercentile(x, weights_of(t) if t.size > 1 else np.ones(t.size), 95)
        if p95 > 0:
            ratio = min(max(float(x.max()) / p95, MIN_PEAK_RATIO), MAX_PEAK_RATIO)
            # The shadow's series as the full VM would do it, against the rate.
            scaled = x * (exact / (p95 * margin))
            backlog = largest_backlog(t, scaled, exact)
            burst_s = math.ceil(backlog / (exact * ratio) - 1e-9)
    burst_s = min(max(burst_s, MIN_BURST_S), MAX_BURST_S)
    return Bucket(rate=rate, burst=_step_up(rate * ratio), burst_s=burst_s)
