"""Host-side sampling of a shadow from libvirt's cumulative counters.

The host view does not trust the guest: CPU time is what QEMU spent, I/O is
what reached the virtual disks. Counters are cumulative, so each point is the
delta over one interval. ``balloon.rss`` is QEMU's own footprint on the host,
not the guest's memory use; guest memory comes from balloon stats (page cache
excluded) when the guest's virtio_balloon driver reports them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.hypervisor.port import DomainCounters


def _vcpu_ns(c: DomainCounters) -> int:
    # Busy vCPUs come from the vCPU threads' time: cpu.time also counts QEMU's
    # I/O and emulation threads, which is the shadow's cost to the host but not
    # CPU the workload would need (a 1-vCPU shadow showed 1.4 "busy" under fio).
    # Drivers without per-vCPU stats (the test driver) fall back to cpu.time.
    return c.vcpu_time_ns if c.vcpu_time_ns > 0 else c.cpu_time_ns


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
        busy_vcpus=max(0.0, (_vcpu_ns(cur) - _vcpu_ns(prev)) / 1e9 / dt),
        mem_used_mib=cur.guest_used_kib / 1024 if cur.guest_used_kib is not None else None,
        read_iops=max(0, cur.rd_reqs - prev.rd_reqs) / dt,
        write_iops=max(0, cur.wr_reqs - prev.wr_reqs) / dt,
        read_bps=max(0, cur.rd_bytes - prev.rd_bytes) / dt,
        write_bps=max(0, cur.wr_bytes - prev.wr_bytes) / dt,
        wait_vcpus=_wait(prev, cur, dt),
    )


def _wait(prev: DomainCounters, cur: DomainCounters, dt: float) -> float | None:
    """vCPUs' worth of run-queue delay over the interval: a starved shadow's
    figures are the host's, not the workload's. None where the driver reports
    no delay (the test driver; a counter that never moved says nothing)."""
    if cur.vcpu_delay_ns <= 0:
        return None
    return max(0, cur.vcpu_delay_ns - prev.vcpu_delay_ns) / 1e9 / dt


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
        self._wake = threading.Event()  # a phase boundary, or stop
        self._phase: str | None = None
        self._lock = threading.Lock()
        self.peak_rss_kib = 0
        self.missed = 0  # intervals without a reading
        self.first: DomainCounters | None = None
        self.last: DomainCounters | None = None
        self._thread = threading.Thread(target=self._loop, name="host-sampler", daemon=True)

    def set_phase(self, phase_id: str | None) -> None:
        """Tag the points from now on; the interval restarts here, so the
        phase's first point covers its first interval alone (the agent's
        samples restart with a phase too)."""
        with self._lock:
            changed, self._phase = phase_id != self._phase, phase_id
        if changed:
            self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            prev = self.first = self._read()
        except VmshadowError:
            prev = self.first = None  # a later reading starts the series
        with self._lock:
            prev_phase = self._phase
        due = time.monotonic() + self._interval
        while True:
            boundary = self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            self._wake.clear()
            now = time.monotonic()
            # After a boundary the next interval starts now; else on the beat,
            # skipping beats a stalled reading missed rather than bursting.
            if boundary or due + self._interval <= now:
                due = now + self._interval
            else:
                due += self._interval
            try:
                cur = self._read()
            except VmshadowError:
                # libvirt unreachable for a moment (e.g. libvirtd restarting): skip
                # the interval; the next reading gives the delta over both.
                self.missed += 1
                continue
            if cur is None:
                return  # the domain is gone; the session notices on its own
            self.last = cur
            if cur.rss_kib:
                self.peak_rss_kib = max(self.peak_rss_kib, cur.rss_kib)
            with self._lock:
                phase = self._phase
            if prev is not None:
                # A point belongs to a phase only if the phase ran for the whole
                # interval; one cut short by a boundary (or that straddles one,
                # should a reading be late) is no full interval of either.
                tag = phase if phase == prev_phase and not boundary else None
                point = host_point(prev, cur, t0=self._t0, phase_id=tag)
                if point is not None:
                    self._emit(point)
            else:
                self.first = cur
            prev, prev_phase = cur, phase

    @property
    def qemu_cpu_s(self) -> float | None:
        """CPU-seconds the whole QEMU process used while sampled: the shadow's cost to the host."""
        if self.first is None or self.last is None:
            return None
        return max(0, self.last.cpu_time_ns - self.first.cpu_time_ns) / 1e9
