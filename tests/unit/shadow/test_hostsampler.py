"""Host-side rates from libvirt's cumulative counters."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.hypervisor.port import DomainCounters
from vmshadow.shadow.hostsampler import HostSampler, host_point


def counters(t: float, *, cpu: float, vcpu: float, rd: int = 0, wr: int = 0) -> DomainCounters:
    return DomainCounters(
        taken_at=t,
        cpu_time_ns=int(cpu * 1e9),
        vcpu_time_ns=int(vcpu * 1e9),
        rss_kib=600_000,
        guest_used_kib=300 * 1024,
        rd_reqs=rd,
        wr_reqs=wr,
        rd_bytes=rd * 4096,
        wr_bytes=wr * 4096,
    )


def test_busy_vcpus_come_from_vcpu_threads_not_qemu_overhead() -> None:
    # QEMU spent 1.4 CPU-s in the second (I/O threads), the vCPU only 0.9.
    p = host_point(
        counters(10, cpu=0, vcpu=0),
        counters(11, cpu=1.4, vcpu=0.9, rd=300, wr=100),
        t0=5,
        phase_id="io",
    )
    assert p is not None
    assert p.busy_vcpus == pytest.approx(0.9)
    assert (p.read_iops, p.write_iops) == (300, 100)
    assert p.read_bps == 300 * 4096
    assert p.mem_used_mib == 300
    assert p.t == 6
    assert p.source is Source.HOST


def test_without_vcpu_stats_cpu_time_is_used() -> None:
    p = host_point(counters(0, cpu=0, vcpu=0), counters(2, cpu=1, vcpu=0), t0=0, phase_id=None)
    assert p is not None and p.busy_vcpus == pytest.approx(0.5)


def test_counter_reset_never_gives_negative_rates() -> None:
    # A domain restarted under the same name starts its counters again.
    p = host_point(
        counters(0, cpu=5, vcpu=5, rd=1000), counters(1, cpu=0, vcpu=0, rd=0), t0=0, phase_id=None
    )
    assert p is not None and p.busy_vcpus == 0 and p.read_iops == 0


def test_empty_interval_gives_no_point() -> None:
    c = counters(3, cpu=1, vcpu=1)
    assert host_point(c, c, t0=0, phase_id=None) is None


class FakeDomain:
    """Counters that advance by one second of vCPU per read, on a fake clock."""

    def __init__(self) -> None:
        self.reads = 0
        self.gone_after: int | None = None

    def read(self) -> DomainCounters | None:
        self.reads += 1
        if self.gone_after is not None and self.reads > self.gone_after:
            return None
        n = float(self.reads)
        return counters(n, cpu=n * 1.2, vcpu=n)


def run_sampler(dom: FakeDomain, phases: Iterator[str | None]) -> list[UsagePoint]:
    points: list[UsagePoint] = []
    done = threading.Event()
    sampler: HostSampler

    def emit(p: UsagePoint) -> None:
        points.append(p)
        nxt = next(phases, "END")
        if nxt == "END":
            done.set()
        else:
            sampler.set_phase(nxt)

    sampler = HostSampler(dom.read, emit, interval_s=0.001, t0=0)
    sampler.start()
    assert done.wait(5)
    sampler.stop()
    return points


def test_points_straddling_a_phase_boundary_belong_to_no_phase() -> None:
    dom = FakeDomain()
    # Phase "a" starts after the first point and ends after the third.
    pts = run_sampler(dom, iter(["a", "a", None, None]))
    tags = [p.phase_id for p in pts[:4]]
    assert tags[0] is None  # ran before any phase
    assert tags[1] is None  # started mid-interval
    assert tags[2] == "a"  # whole interval inside "a"
    assert tags[3] is None  # ended mid-interval


def test_sampler_stops_when_the_domain_disappears_and_reports_qemu_cpu() -> None:
    dom = FakeDomain()
    dom.gone_after = 4
    got: list[UsagePoint] = []
    sampler = HostSampler(dom.read, got.append, interval_s=0.001, t0=0)
    sampler.start()
    sampler._thread.join(5)
    assert not sampler._thread.is_alive()
    assert len(got) == 3
    assert sampler.peak_rss_kib == 600_000
    # First read at n=1, last at n=4: 3 s of QEMU time at 1.2 CPU-s per read.
    assert sampler.qemu_cpu_s == pytest.approx(3.6)


def test_a_phase_boundary_is_read_at_once_and_restarts_the_interval() -> None:
    # An interval no test waits for: only the boundaries cause readings.
    dom = FakeDomain()
    got: list[UsagePoint] = []
    seen = threading.Semaphore(0)

    def emit(p: UsagePoint) -> None:
        got.append(p)
        seen.release()

    sampler = HostSampler(dom.read, emit, interval_s=3600, t0=0)
    sampler.start()
    try:
        sampler.set_phase("a")
        assert seen.acquire(timeout=5)  # read at the phase's start, not an hour later
        sampler.set_phase("a")  # no change, no reading
        sampler.set_phase(None)
        assert seen.acquire(timeout=5)
    finally:
        sampler.stop()
    assert dom.reads == 3  # the first reading, then one per boundary
    # Both cut short by a boundary: no full interval of a phase.
    assert [p.phase_id for p in got] == [None, None]
