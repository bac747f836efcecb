"""Runs recorded by sysstat ``sar`` as CSV (one row per second), as in the Lumos data set.

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
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import Requirement

Floats = NDArray[np.float64]
SECTOR_BYTES = 512


class SarError(ConfigError):
    """A sar CSV or its report cannot be read; names the file and the reason."""


@dataclass(frozen=True)
class UsageSeries:
    """Per-second usage of one VM run; every array has one value per second."""

    vcpus: int  # the VM's size: busy_vcpus never exceeds it
    busy_vcpus: Floats
    mem_used_mib: Floats
    read_iops: Floats
    write_iops: Floats
    iops: Floats  # total requests/s (may differ slightly from read + write in sar)
    read_bps: Floats
    write_bps: Floats
    # Empty when not measured (a sar file without the columns, the host's view).
    forks: Floats = field(default_factory=lambda: np.zeros(0))
    faults: Floats = field(default_factory=lambda: np.zeros(0))

    @property
    def seconds(self) -> int:
        return len(self.busy_vcpus)

    def requirement(self) -> Requirement:
        """P95 busy vCPUs, peak memory used, P95 IOPS (DESIGN.md "requirement")."""
        return Requirement(
            vcpus=_p(self.busy_vcpus, 95),
            memory_mib=float(np.max(self.mem_used_mib)) if self.mem_used_mib.size else 0.0,
            iops=_p(self.iops, 95),
        )


def _p(values: Floats, q: float) -> float:
    # Linear interpolation, as domain.samples.percentile; 0 for an empty series.
    return float(np.percentile(values, q)) if values.size else 0.0


@dataclass(frozen=True)
class Columns:
    """Positions of the fields used, resolved once per header."""

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

        rtps = first("rtps")
        # The all-devices section: tps rtps wtps bread/s bwrtn/s, in this order.
        tps = rtps - 1 if rtps > 0 and names[rtps - 1] == "tps" else None
        after = names[rtps:]
        return cls(
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
    """Read one run; rows that are repeated headers, cut short or not numbers are skipped.

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
    for row in rows[1:]:
        if len(row) != len(header) or row[0] == header[0]:
            continue  # a repeated header (sar restarted) or a line cut short
        try:
            vals = [math.nan if i is None else float(row[i]) for i in wanted]
        except ValueError:
            continue
        if all(math.isfinite(v) for i, v in zip(wanted, vals, strict=True) if i is not None):
            values.append(vals)
    if len(values) < 2:
        raise SarError(str(path), f"fewer than 2 readable samples ({len(values)})")
    a = np.asarray(values, dtype=np.float64)
    idle, iowait, used, buffers, cached, rtps, wtps, tps, bread, bwrtn, forks, faults = a.T
    busy = np.clip((100.0 - idle - iowait) / 100.0, 0.0, 1.0) * vcpus
    mem = np.maximum(used - buffers - cached, 0.0) / 1024.0
    total = tps if cols.tps is not None else rtps + wtps
    return UsageSeries(
        vcpus=vcpus,
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
