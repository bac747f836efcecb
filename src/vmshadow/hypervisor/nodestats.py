"""How busy the libvirt host is, measured through libvirt itself.

``vmshadow doctor`` read the local ``/proc/stat``: with a remote URI
(``qemu+ssh://other/system``) it reported this machine's idle CPUs against
the other host's CPU count. libvirt's node statistics are the host's own
(``virNodeGetCPUStats``, ``virNodeGetMemoryStats``, all cells/CPUs), local or
remote. Drivers without them (the test driver reports fixed CPU times and no
memory stats) give ``None``: unknown, which callers say rather than guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import libvirt

from vmshadow.domain.errors import HypervisorError

ALL = -1  # VIR_NODE_CPU_STATS_ALL_CPUS / VIR_NODE_MEMORY_STATS_ALL_CELLS
CPU_SAMPLE_S = 1.0  # half a second on a busy 2-CPU host read "0.2 idle" from noise


@dataclass(frozen=True)
class NodeLoad:
    cpus: int
    idle_cpus: float | None  # CPUs' worth idle over the sample; None: not reported
    memory_mib: int
    free_memory_mib: int | None  # free + buffers + page cache; None: not reported


def _cpu_times(conn: libvirt.virConnect) -> tuple[int, int] | None:
    """(idle, total) nanoseconds over all CPUs, or None when the driver has none."""
    try:
        stats = conn.getCPUStats(ALL)
    except libvirt.libvirtError:
        return None
    try:
        idle = int(stats["idle"]) + int(stats.get("iowait", 0))
        total = idle + int(stats["user"]) + int(stats["kernel"])
    except (KeyError, TypeError, ValueError):
        return None
    return idle, total


def idle_cpus(
    conn: libvirt.virConnect,
    cpus: int,
    sample_s: float = CPU_SAMPLE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """Idle CPUs on the connection's host over ``sample_s`` seconds (None: unknown)."""
    first = _cpu_times(conn)
    if first is None:
        return None
    sleep(sample_s)
    second = _cpu_times(conn)
    if second is None:
        return None
    d_idle, d_total = second[0] - first[0], second[1] - first[1]
    if d_total <= 0 or d_idle < 0:
        return None  # counters that do not move (the test driver) say nothing
    return cpus * min(1.0, d_idle / d_total)


def memory_mib(conn: libvirt.virConnect) -> tuple[int, int] | None:
    """(total, free) MiB on the connection's host, page cache counted as free
    (None: unknown). The node info's total misses hot-plugged memory (6.3 GiB
    of a 24 GiB host here), so the total comes from the same statistics."""
    try:
        stats = conn.getMemoryStats(ALL)
        total = int(stats["total"])
        free = int(stats["free"]) + int(stats.get("buffers", 0)) + int(stats.get("cached", 0))
    except (libvirt.libvirtError, KeyError, TypeError, ValueError):
        return None
    return total >> 10, free >> 10


def measure(uri: str, sample_s: float = CPU_SAMPLE_S) -> NodeLoad:
    """CPU and memory load of the host behind ``uri``, on its own connection."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"cannot connect to libvirt at {uri}: {exc}") from exc
    try:
        try:
            info = conn.getInfo()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot read the node info of {uri}: {exc}") from exc
        cpus = int(info[2])
        idle = idle_cpus(conn, cpus, sample_s)
        memory = memory_mib(conn)
        return NodeLoad(
            cpus=cpus,
            idle_cpus=idle,
            memory_mib=int(info[1]) if memory is None else memory[0],
            free_memory_mib=None if memory is None else memory[1],
        )
    finally:
        conn.close()


@dataclass(frozen=True)
class CpuTimes:
    """This machine's CPU counters (``/proc/stat``'s first line, in ticks)."""

    busy: int
    steal: int
    total: int


def local_cpu_times(path: Path = Path("/proc/stat")) -> CpuTimes | None:
    """This machine's CPU times, steal included (None when unreadable).

    libvirt's node statistics have no steal (its Linux driver folds
    ``/proc/stat`` into user, kernel, idle and iowait), and steal is what a
    host that is itself a VM loses to its own hypervisor: read here, so only
    for a libvirt host that is this machine (``is_local``).
    """
    try:
        first = path.read_text().splitlines()[0].split()
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    except (OSError, IndexError, ValueError):
        return None
    busy = user + nice + system + irq + softirq
    return CpuTimes(busy=busy, steal=steal, total=busy + idle + iowait + steal)


def cpu_shares(before: CpuTimes, after: CpuTimes) -> tuple[float, float] | None:
    """(busy, steal) as fractions of the host's CPU time between two readings."""
    total = after.total - before.total
    if total <= 0:
        return None
    return (after.busy - before.busy) / total, (after.steal - before.steal) / total


def is_local(uri: str) -> bool:
    """A URI whose hypervisor runs on this machine (no host part: qemu:///system)."""
    return urlsplit(uri).hostname in (None, "", "localhost")
