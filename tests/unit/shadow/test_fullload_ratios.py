"""How the closed loop judges an allocation: CPU the VM ran plus what it queued
for behind other host work, against what the load asks."""

from __future__ import annotations

import pytest

from vmshadow.domain.prediction import Requirement
from vmshadow.usecases.fullload import DelayReading, _ratios, cpu_wait_vcpus


def readings(phase: str, delays_ms: list[int], start: float = 10.0) -> list[DelayReading]:
    return [DelayReading(start + i, d * 1_000_000, phase) for i, d in enumerate(delays_ms)]


def test_wait_is_the_cpu_phase_mean_without_its_first_interval() -> None:
    # 500 ms queued in the first (calibrating) second, then 20 ms per second.
    rs = readings("s0-cpu", [0, 500, 520, 540, 560])
    assert cpu_wait_vcpus(rs) == pytest.approx(0.02)


def test_intervals_of_other_phases_and_straddling_ones_do_not_count() -> None:
    rs = [
        *readings("s0-memory", [0, 900, 1800], start=0.0),
        *readings("s0-cpu", [2000, 2000, 2100, 2200, 2300], start=3.0),
        *readings("s0-io", [5000, 9000], start=8.0),
    ]
    assert cpu_wait_vcpus(rs) == pytest.approx(0.1)
    assert cpu_wait_vcpus(readings("s0-io", [0, 700, 1400])) == 0.0
    assert cpu_wait_vcpus([]) == 0.0


def test_a_vm_with_room_kept_up_whatever_the_stressor_delivered() -> None:
    asked = Requirement(vcpus=0.2, memory_mib=121, iops=2.5)
    # stress-ng asked for 20 % delivered 17.8 % on an idle 1-vCPU VM.
    assert _ratios(asked, Requirement(0.178, 150, 3.5), 0.003, vcpus=1)["vcpus"] == 1.0
    # Two vCPUs on a busy 2-core host: ran 0.8, queued 0.7 behind other work.
    assert (
        _ratios(Requirement(1.5, 121, 2.5), Requirement(0.8, 150, 3.5), 0.7, vcpus=2)["vcpus"]
        == 1.0
    )


def test_a_saturated_vm_is_short_by_what_it_could_not_run() -> None:
    # Too small a VM: its one vCPU busy, hardly any queueing, 1.5 asked.
    small = _ratios(Requirement(1.5, 121, 2.5), Requirement(0.98, 150, 3.5), 0.01, vcpus=1)
    assert small["vcpus"] == pytest.approx(0.66, abs=0.01)
    assert small["memory_mib"] == 1.0 and small["iops"] == 1.0
    # Saturated only because the host queued it: the allocation was enough.
    queued = _ratios(Requirement(0.95, 121, 2.5), Requirement(0.7, 150, 3.5), 0.25, vcpus=1)
    assert queued["vcpus"] == pytest.approx(1.0)
    # Short memory and IOPS show as their own shares.
    lacking = _ratios(Requirement(0.2, 400, 10), Requirement(0.2, 300, 4), 0.0, vcpus=1)
    assert lacking == {"vcpus": 1.0, "memory_mib": 0.75, "iops": 0.4}
