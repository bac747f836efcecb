"""Runs recorded by sysstat ``sar`` (CSV), as in the Lumos data set.

``sar -A``'s CSV repeats column names: ``tps`` appears first for the disk
device and again for the all-devices total, so columns are taken by position
(the *last* ``tps`` is the total). Busy vCPUs exclude iowait, as the data set's
facts do; memory used is net of buffers and page cache.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.samples import percentile


@dataclass(frozen=True)
class RunUsage:
    seconds: int
    p95_vcpus: float
    mean_vcpus: float
    saturated_share: float  # share of seconds with every vCPU busy (>= 90 %)
    peak_mem_mib: float
    mean_mem_mib: float
    p95_iops: float
    mean_iops: float


def _col(header: list[str], name: str, *, last: bool = False) -> int:
    idx = [i for i, h in enumerate(header) if h.strip() == name]
    if not idx:
        raise ConfigError(name, "column missing from the sar CSV")
    return idx[-1] if last else idx[0]


def read_sar(path: Path, vcpus: int) -> RunUsage:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3:
        raise ConfigError(str(path), "fewer than two samples")
    header = rows[0]
    idle, iowait = _col(header, "%idle"), _col(header, "%iowait")
    tps = _col(header, "tps", last=True)
    used, buf, cache = (
        _col(header, "kbmemused"),
        _col(header, "kbbuffers"),
        _col(header, "kbcached"),
    )
    busy: list[float] = []
    mem: list[float] = []
    iops: list[float] = []
    for r in rows[1:]:
        if len(r) < len(header) or r[0] == header[0]:
            continue  # a repeated header (sar restarts) or a cut line
        try:
            b = max(0.0, 100 - float(r[idle]) - float(r[iowait])) / 100 * vcpus
            m = (float(r[used]) - float(r[buf]) - float(r[cache])) / 1024
            i = float(r[tps])
        except ValueError:
            continue
        if math.isfinite(b) and math.isfinite(m) and math.isfinite(i):
            busy.append(b)
            mem.append(m)
            iops.append(i)
    if len(busy) < 2:
        raise ConfigError(str(path), "no readable samples")
    return RunUsage(
        seconds=len(busy),
        p95_vcpus=percentile(busy, 95),
        mean_vcpus=sum(busy) / len(busy),
        saturated_share=sum(1 for b in busy if b >= 0.9 * vcpus) / len(busy),
        peak_mem_mib=max(mem),
        mean_mem_mib=sum(mem) / len(mem),
        p95_iops=percentile(iops, 95),
        mean_iops=sum(iops) / len(iops),
    )


def run_completed(report: Path) -> bool:
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return False
    done = data.get("completed")
    return done is True or str(done).lower() == "true"
