"""The physical extrapolation: scale only what the shadow ran out of."""

from __future__ import annotations

import pytest

from vmshadow.domain.prediction import Requirement
from vmshadow.predict.physical import physical_need

SIZES = {
    "shadow_vcpus": 2,
    "shadow_memory_mib": 4096,
    "target_vcpus": 8,
    "target_memory_mib": 16384,
}


def test_unsaturated_needs_what_it_used() -> None:
    s = physical_need(Requirement(1.0, 1000, 50), **SIZES)
    assert s.need == Requirement(1.0, 1000, 50)
    assert not s.cpu_bound and not s.memory_bound


def test_saturated_scales_linearly_capped_at_the_target() -> None:
    s = physical_need(Requirement(1.9, 4000, 50), **SIZES)
    assert s.cpu_bound and s.memory_bound
    assert s.need.vcpus == pytest.approx(7.6)
    assert s.need.memory_mib == 16000
    assert s.need.iops == pytest.approx(200)  # I/O issued as fast as the CPU allowed
    assert physical_need(Requirement(2.0, 100, 0), **SIZES).need.vcpus == 8
