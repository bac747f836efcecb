"""Runs recorded by sysstat ``sar`` as CSV, as in the Lumos data set (one row per
second there; any interval reads the same, see "Time" below).

``sar -A`` writes several report sections side by side, and their column names
repeat. In the Lumos files ``tps`` appears twice: first in the per-device
section (``tps rd_sec/s wr_sec/s avgrq-sz ...`` of the disk), then in the
all-devices section (``tps rtps wtps bread/s bwrtn/s``). Columns are therefore
taken by position: CPU and memory fields by their first (only) occurrence, and
the all-devices I/O fields as the ``tps`` column *right before* ``rtps`` and the
columns after it. A file with a single ``tps`` before ``rtps`` reads the same.

Per second the series holds what the shadow can also measure of itself
(:mod:`vmshadow.predict.features` reads both the same way):

- busy vCPUs = (100 - %idle - %iowait) / 100 x vCPUs (iowait is waiting, not work);
- memory used net of buffers and page cache = kbmemused - kbbuffers - kbcached, MiB;
- IOPS = the all-devices ``tps`` (rtps + wtps when it is missing), with the
  read/write split and bytes/s (``bread/s``, ``bwrtn/s`` count 512-byte blocks);
- processes started per second (``proc/s``) and page faults per second
  (``fault/s``), when the file has them (the guest agent reads the same counters).

Time comes from the samples' own timestamps (the ``timestamp`` column: seconds,
``HH:MM:SS`` wrapping at midnight, or an ISO date and time), never from how many
rows there are: sar may sample every 1 s or every 10 s, and the shadow's agent
anywhere from 0.2 s to 10 s. Each sample is a rate over the interval that ends
at its timestamp, so it speaks for the time since the previous sample (the first
for one typical interval, the median spacing). A sample after a gap speaks for
at most :data:`GAP_INTERVALS` intervals: what happened in a longer gap was not
measured, and one sample's values should not stand for minutes of it.
Percentiles and means are weighted by that time, so a run sampled every 5 s and
the same run every second give the same figures, within what averaging blurs.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import Requirement

Floats = NDArray[np.float64]
SECTOR_BYTES = 512
GAP_INTERVALS = 4.0  # the most intervals one sample speaks for after a gap
DAY_S = 86400.0


class SarError(ConfigError):
    """A sar CSV or its report cannot be read; names the file and the reason."""


def _empty() -> Floats:
    return np.zeros(0)


def interval_of(t: Floats) -> float:
    """The typical sampling interval (median spacing of the timestamps; of two
    middle values the larger, so that a last sample cut short does not shorten
    a short run's interval), NaN with fewer than two distinct timestamps."""
    d = np.diff(t)
    d = d[d > 0]
    return float(np.percentile(d, 50, method="higher")) if d.size else math.nan


def weights_of(t: Floats, step_s: float | None = None) -> Floats:
    """Seconds each sample speaks for: the time since the previous sample (one
    interval for the first), at most GAP_INTERVALS intervals. Equal weights when
    the interval is unknown (a single sample). ``step_s``: the interval when the
    recorder said, else it is inferred from the timestamps."""
    step = interval_of(t) if step_s is None else step_s
    if not math.isfinite(step):
        return np.ones(t.size)
    return np.clip(np.diff(t, prepend=t[0] - step), 0.0, GAP_INTERVALS * step)


def duration_of(t: Floats, step_s: float | None = None) -> float:
    """Seconds the samples cover, first interval included; NaN when unknown."""
    step = interval_of(t) if step_s is None else step_s
    return float(t[-1] - t[0] + step) if t.size and math.isfinite(step) else math.nan


def wpercentile(v: Floats, w: Floats, q: float) -> float:
    """Time-weighted percentile with linear interpolation. With equal weights it is
    exactly ``np.percentile(v, q)``: sample i of n sorted sits at (S_i - w_i) /
    (S_n - w_n), S the running sum of weights, which is (i - 1) / (n - 1) then.
    NaN for no values."""
    if v.size == 0:
        return math.nan
    order = np.argsort(v, kind="stable")
    vs, ws = v[order], w[order]
    run = np.cumsum(ws)
    denom = run[-1] - ws[-1]
    if denom <= 0:
        return float(np.percentile(v, q))
    return float(np.interp(q / 100, (run - ws) / denom, vs))


def wmean(v: Floats, w: Floats) -> float:
    """Time-weighted mean; NaN for no values."""
    if v.size == 0:
        return math.nan
    total = float(np.sum(w))
    return float(np.sum(v * w) / total) if total > 0 else float(np.mean(v))


@dataclass(frozen=True)
class UsageSeries:
    """Usage of one VM run, one value per sample. ``t`` holds when each sample's
    interval ended (seconds, any origin) for the CPU and I/O arrays; memory and
    the process/fault rates may be sampled on their own clocks (the guest's, in a
    live shadow), ``mem_t`` and ``act_t``, else they share ``t``."""

    vcpus: int  # the VM's size: busy_vcpus never exceeds it
    busy_vcpus: Floats
    mem_used_mib: Floats
    read_iops: Floats
    write_iops: Floats
    iops: Floats  # total requests/s (may differ slightly from read + write in sar)
    read_bps: Floats
    write_bps: Floats
    _: KW_ONLY
    t: Floats
    # Empty when not measured (a sar file without the columns, the host's view).
    forks: Floats = field(default_factory=_empty)
    faults: Floats = field(default_factory=_empty)
    mem_t: Floats | None = None
    act_t: Floats | None = None
    # The sampling interval when the recorder said (sadf, a resampled series);
    # None: inferred from each timeline's timestamps.
    step_s: float | None = None

    def __post_init__(self) -> None:
        # A programming error, not an outcome: whoever builds a series pairs values
        # with their timestamps.
        pairs = {
            "t": (self.t, self.busy_vcpus),
            "mem_t": (self.mem_times, self.mem_used_mib),
            "act_t (forks)": (self.activity_times, self.forks),
        }
        if self.faults.size:
            pairs["act_t (faults)"] = (self.activity_times, self.faults)
        for name, (t, v) in pairs.items():
            if v.size and t.size != v.size:
                raise ValueError(f"{name} has {t.size} timestamps for {v.size} values")

    @property
    def mem_times(self) -> Floats:
        return self.t if self.mem_t is None else self.mem_t

    @property
    def activity_times(self) -> Floats:
        return self.t if self.act_t is None else self.act_t

    @property
    def interval_s(self) -> float:
        """The sampling interval of the CPU and I/O samples."""
        return interval_of(self.t) if self.step_s is None else self.step_s

    @property
    def seconds(self) -> float:
        """How long the run was measured, from the timestamps (NaN for one sample)."""
        return duration_of(self.t, self.step_s)

    def weights(self, t: Floats | None = None) -> Floats:
        """Seconds each sample of ``t`` (default: the CPU and I/O timeline) speaks for."""
        return weights_of(self.t if t is None else t, self.step_s)

    def duration(self, t: Floats) -> float:
        return duration_of(t, self.step_s)

    def requirement(self) -> Requirement:
        """P95 busy vCPUs, peak memory used, P95 IOPS (DESIGN.md "requirement"),
        percentiles weighted by the time each sample speaks for."""
        w = self.weights()
        return Requirement(
            vcpus=_p(self.busy_vcpus, w, 95),
            memory_mib=float(np.max(self.mem_used_mib)) if self.mem_used_mib.size else 0.0,
            iops=_p(self.iops, w, 95),
        )


def _p(values: Floats, w: Floats, q: float) -> float:
    # 0 for an empty series: a requirement is a size, never NaN.
    return wpercentile(values, w, q) if values.size else 0.0


def parse_time(text: str) -> float | None:
    """Seconds from a sar timestamp: a number, ``HH:MM:SS`` (optionally AM/PM) or
    an ISO date and time; None when it is none of them."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    clock, _, half = text.partition(" ")
    parts = clock.split(":")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and half.upper() in ("", "AM", "PM"):
        h, m, sec = (int(p) for p in parts)
        if half:
            h = h % 12 + (12 if half.upper() == "PM" else 0)
        return float(h * 3600 + m * 60 + sec)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def monotonic_times(raw: list[float]) -> tuple[Floats, list[int]]:
    """Times made non-decreasing: a clock of day going back by more than half a
    day crossed midnight; any other step back (sar restarted and replayed) drops
    that sample. A repeated time is kept: sar prints whole seconds, so two samples
    in one printed second (after a 2 s step) are clock jitter, not a replay.
    Returns the times kept and their indices."""
    kept: list[int] = []
    out: list[float] = []
    offset = 0.0
    prev = -math.inf
    for i, v in enumerate(raw):
        if out and v + offset < prev - DAY_S / 2:
            offset += DAY_S
        v += offset
        if v >= prev:
            kept.append(i)
            out.append(v)
            prev = v
    return np.asarray(out, dtype=np.float64), kept


@dataclass(frozen=True)
class Columns:
    """Positions of the fields used, resolved once per header."""

    time: int
    idle: int
    iowait: int
    memused: int
    buffers: int
    cached: int
    tps: int | None
    rtps: int
    wtps: int
    bread: int | None
    bwrtn: int | None
    forks: int | None
    faults: int | None

    @classmethod
    def of(cls, header: list[str], path: Path) -> Columns:
        names = [h.strip() for h in header]

        def first(name: str) -> int:
            if name not in names:
                raise SarError(str(path), f"column {name!r} missing from the sar CSV header")
            return names.index(name)

        time = first("timestamp")
        rtps = first("rtps")
        # The all-devices section: tps rtps wtps bread/s bwrtn/s, in this order.
        tps = rtps - 1 if rtps > 0 and names[rtps - 1] == "tps" else None
        after = names[rtps:]
        return cls(
            time=time,
            idle=first("%idle"),
            iowait=first("%iowait"),
            memused=first("kbmemused"),
            buffers=first("kbbuffers"),
            cached=first("kbcached"),
            tps=tps,
            rtps=rtps,
            wtps=first("wtps"),
            bread=rtps + after.index("bread/s") if "bread/s" in after else None,
            bwrtn=rtps + after.index("bwrtn/s") if "bwrtn/s" in after else None,
            forks=names.index("proc/s") if "proc/s" in names else None,
            faults=names.index("fault/s") if "fault/s" in names else None,
        )


def read_sar(path: Path, vcpus: int) -> UsageSeries:
    """Read one run; rows that are repeated headers, cut short, not numbers or not
    later than the row before are skipped.

    >>> s = read_sar(Path("tests/data/lumos-mini/c5.large/spark_scan_tiny_1/sar.csv"), 2)
    >>> s.requirement().vcpus <= 2
    True
    """
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise SarError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise SarError(str(path), f"not a CSV file: {exc}") from exc
    if not rows:
        raise SarError(str(path), "empty file")
    header = rows[0]
    cols = Columns.of(header, path)
    wanted = [
        cols.idle,
        cols.iowait,
        cols.memused,
        cols.buffers,
        cols.cached,
        cols.rtps,
        cols.wtps,
        cols.tps,
        cols.bread,
        cols.bwrtn,
        cols.forks,
        cols.faults,
    ]
    values: list[list[float]] = []
    times: list[float] = []
    for row in rows[1:]:
        if len(row) != len(header) or row[0] == header[0]:
            continue  # a repeated header (sar restarted) or a line cut short
        at = parse_time(row[cols.time])
        try:
            vals = [math.nan if i is None else float(row[i]) for i in wanted]
        except ValueError:
            continue
        if at is None:
            continue
        if all(math.isfinite(v) for i, v in zip(wanted, vals, strict=True) if i is not None):
            values.append(vals)
            times.append(at)
    t, kept = monotonic_times(times)
    values = [values[i] for i in kept]
    if len(values) < 2:
        raise SarError(str(path), f"fewer than 2 readable samples ({len(values)})")
    a = np.asarray(values, dtype=np.float64)
    idle, iowait, used, buffers, cached, rtps, wtps, tps, bread, bwrtn, forks, faults = a.T
    busy = np.clip((100.0 - idle - iowait) / 100.0, 0.0, 1.0) * vcpus
    mem = np.maximum(used - buffers - cached, 0.0) / 1024.0
    total = tps if cols.tps is not None else rtps + wtps
    return UsageSeries(
        vcpus=vcpus,
        t=t,
        busy_vcpus=busy,
        mem_used_mib=mem,
        read_iops=rtps,
        write_iops=wtps,
        iops=total,
        read_bps=np.nan_to_num(bread) * SECTOR_BYTES,
        write_bps=np.nan_to_num(bwrtn) * SECTOR_BYTES,
        forks=forks if cols.forks is not None else np.zeros(0),
        faults=faults if cols.faults is not None else np.zeros(0),
    )


def run_completed(report: Path) -> bool:
    """``completed`` of a run's report.json; raises SarError when it cannot be read."""
    try:
        data = json.loads(report.read_text())
    except OSError as exc:
        raise SarError(str(report), f"cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise SarError(str(report), f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or "completed" not in data:
        raise SarError(str(report), "no 'completed' field")
    done = data["completed"]
    return done is True or str(done).strip().lower() == "true"
