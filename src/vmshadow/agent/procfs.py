"""The guest's own view of CPU, memory and disk, from /proc deltas.

Parsers are pure functions over file text so they can be tested with fixed
inputs; ``Sampler`` reads the files and turns two snapshots into rates.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size
_SKIP_DISKS = ("loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd")
_WHOLE_DISK_RE = re.compile(r"(?:vd|sd|hd|xvd)[a-z]+|nvme\d+n\d+|mmcblk\d+")


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # jiffies not idle and not iowait, all CPUs
    total: int
    cpus: int
    forks: int  # processes (and threads) created since boot: the ``processes`` line


@dataclass(frozen=True)
class DiskCounters:
    reads: int
    writes: int
    read_sectors: int
    write_sectors: int


def parse_stat(text: str) -> CpuTimes:
    """The aggregate ``cpu`` line; busy is everything but idle and iowait.

    guest and guest_nice are already inside user and nice, so only the first
    eight columns are summed. Steal counts as busy: the vCPU wanted to run.
    """
    busy = total = cpus = forks = 0
    for line in text.splitlines():
        if line.startswith("processes "):
            forks = int(line.split()[1])
        elif line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]
            values += [0] * (8 - len(values))
            total = sum(values)
            busy = total - values[3] - values[4]
        elif line.startswith("cpu") and line[3:4].isdigit():
            cpus += 1
    return CpuTimes(busy=busy, total=total, cpus=max(cpus, 1), forks=forks)


def parse_vmstat_faults(text: str) -> int:
    """``pgfault`` of ``/proc/vmstat``: page faults (minor and major) since boot."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "pgfault" and value.strip().isdigit():
            return int(value)
    return 0


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as kiB values by name."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[name.strip()] = int(fields[0])
    return out


def mem_used_kib(info: dict[str, int]) -> int:
    """Memory the guest's programs hold: total minus free, buffers and reclaimable cache."""
    reclaimable = info.get("Buffers", 0) + info.get("Cached", 0) + info.get("SReclaimable", 0)
    return max(0, info.get("MemTotal", 0) - info.get("MemFree", 0) - reclaimable)


def parse_diskstats(text: str, is_disk: Callable[[str], bool]) -> DiskCounters:
    """Sum of completed I/Os and sectors over the devices ``is_disk`` accepts."""
    reads = writes = rsec = wsec = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or not is_disk(fields[2]):
            continue
        reads += int(fields[3])
        rsec += int(fields[5])
        writes += int(fields[7])
        wsec += int(fields[9])
    return DiskCounters(reads, writes, rsec, wsec)


def whole_disk_filter(sys_block: str = "/sys/block") -> Callable[[str], bool]:
    """Accept real whole disks (vda, vdb, sda, nvme0n1), never partitions or virtual devices.

    Partitions would count every I/O twice, and loop/ram/dm devices sit on top
    of (or beside) the real disks. /sys/block lists exactly the whole disks;
    without sysfs a name pattern stands in.
    """
    try:
        names = set(os.listdir(sys_block))
    except OSError:
        names = set()

    def accept(name: str) -> bool:
        if name.startswith(_SKIP_DISKS):
            return False
        if names:
            return name in names
        return _WHOLE_DISK_RE.fullmatch(name) is not None

    return accept


@dataclass(frozen=True)
class Snapshot:
    at: float
    cpu: CpuTimes
    disk: DiskCounters
    faults: int


class Sampler:
    """Rates over the interval since the previous call of ``sample``."""

    def __init__(
        self,
        proc: str = "/proc",
        sys_block: str = "/sys/block",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proc = proc
        self._sys_block = sys_block
        self._clock = clock
        self._last = self._snapshot()

    def _read(self, name: str) -> str:
        with open(os.path.join(self._proc, name)) as f:
            return f.read()

    def _snapshot(self) -> Snapshot:
        return Snapshot(
            at=self._clock(),
            cpu=parse_stat(self._read("stat")),
            disk=parse_diskstats(self._read("diskstats"), whole_disk_filter(self._sys_block)),
            faults=parse_vmstat_faults(self._read("vmstat")),
        )

    def mem_total_kib(self) -> int:
        return parse_meminfo(self._read("meminfo")).get("MemTotal", 0)

    def sample(self) -> dict[str, float | int]:
        """The measurement fields of a ``sample`` message (no phase_id or t)."""
        now = self._snapshot()
        last, self._last = self._last, now
        dt = max(now.at - last.at, 1e-6)
        dtotal = now.cpu.total - last.cpu.total
        dbusy = now.cpu.busy - last.cpu.busy
        # Share of all jiffies, times CPUs: immune to timer jitter in dt.
        cpu_busy = now.cpu.cpus * dbusy / dtotal if dtotal > 0 and dbusy > 0 else 0.0
        info = parse_meminfo(self._read("meminfo"))

        def rate(new: int, old: int, scale: int = 1) -> float:
            return round(max(0, new - old) * scale / dt, 3)

        return {
            "interval_s": round(dt, 6),
            "cpu_busy": round(min(cpu_busy, float(now.cpu.cpus)), 4),
            "mem_used_kib": mem_used_kib(info),
            "mem_total_kib": info.get("MemTotal", 0),
            "read_iops": rate(now.disk.reads, last.disk.reads),
            "write_iops": rate(now.disk.writes, last.disk.writes),
            "read_bps": rate(now.disk.read_sectors, last.disk.read_sectors, SECTOR_BYTES),
            "write_bps": rate(now.disk.write_sectors, last.disk.write_sectors, SECTOR_BYTES),
            # How a program works, not only how much: tasks started (a job that
            # forks a worker per task) and memory touched. They tell a model how
            # far the work could spread on more vCPUs when the shadow's are full.
            "forks_ps": rate(now.cpu.forks, last.cpu.forks),
            "faults_ps": rate(now.faults, last.faults),
        }


_IFACE_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")


def net_interfaces(root: str = "/sys/class/net", limit: int = 64) -> list[str]:
    """The guest's network interfaces as the kernel lists them (a shadow: only ``lo``).

    Read-only, for the host to check isolation from inside as well as from the
    domain XML. Names that are not plain interface names are skipped.
    """
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [n for n in names if _IFACE_RE.fullmatch(n)][:limit]
