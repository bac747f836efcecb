"""Host-side sampling of a shadow from libvirt's cumulative counters.

The host view does not trust the guest: CPU time is what QEMU spent, I/O is
what reached the virtual disks. Counters are cumulative, so each point is the
delta over one interval. ``balloon.rss`` is QEMU's own footprint on the host,
not the guest's memory use; guest memory comes from balloon stats (page cache
excluded) when the guest's virtio_balloon driver reports them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.hypervisor.port import DomainCounters


def host_point(
    prev: DomainCounters, cur: DomainCounters, *, t0: float, phase_id: str | None
) -> UsagePoint | None:
    """Rates between two counter readings; None when the interval is empty."""
    dt = cur.taken_at - prev.taken_at
    if dt <= 0:
        return None
    return UsagePoint(
        t=round(cur.taken_at - t0, 3),
        source=Source.HOST,
        phase_id=phase_id,
        busy_vcpus=max(0.0, (cur.cpu_time_ns - prev.cpu_time_ns) / 1e9 / dt),
        mem_used_mib=cur.guest_used_kib / 1024 if cur.guest_used_kib is not None else None,
        read_iops=max(0, cur.rd_reqs - prev.rd_reqs) / dt,
        write_iops=max(0, cur.wr_reqs - prev.wr_reqs) / dt,
        read_bps=max(0, cur.rd_bytes - prev.rd_bytes) / dt,
        write_bps=max(0, cur.wr_bytes - prev.wr_bytes) / dt,
    )


class HostSampler:
    """Polls a domain's counters on a thread and emits one point per interval."""

    def __init__(
        self,
        read: Callable[[], DomainCounters | None],
        emit: Callable[[UsagePoint], None],
        *,
        interval_s: float,
        t0: float,
    ) -> None:
        self._read = read
        self._emit = emit
        self._interval = interval_s
        self._t0 = t0
        self._stop = threading.Event()
        self._phase: str | None = None
        self._lock = threading.Lock()
        self.peak_rss_kib = 0
        self._thread = threading.Thread(target=self._loop, name="host-sampler", daemon=True)

    def set_phase(self, phase_id: str | None) -> None:
        with self._lock:
            self._phase = phase_id

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        prev = self._read()
        while not self._stop.wait(self._interval):
            cur = self._read()
            if cur is None:
                return  # the domain is gone; the session notices on its own
            if cur.rss_kib:
                self.peak_rss_kib = max(self.peak_rss_kib, cur.rss_kib)
            if prev is not None:
                with self._lock:
                    phase = self._phase
                point = host_point(prev, cur, t0=self._t0, phase_id=phase)
                if point is not None:
                    self._emit(point)
            prev = cur
