"""The shadow-measured predictor, rounding, and override warnings."""

from __future__ import annotations

import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import (
    Requirement,
    override_findings,
    requirement_of,
    round_allocation,
)
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.measured import ShadowMeasuredPredictor


def pt(phase: str | None, src: Source, cpu: float, mem: float, iops: float) -> UsagePoint:
    return UsagePoint(
        t=0,
        source=src,
        phase_id=phase,
        busy_vcpus=cpu,
        mem_used_mib=mem,
        read_iops=iops,
        write_iops=0,
        read_bps=0,
        write_bps=0,
    )


def test_requirement_takes_the_worst_phase_host_cpu_and_guest_memory() -> None:
    pts = [
        *(pt("cpu", Source.HOST, 0.95, 40, 5) for _ in range(10)),
        *(pt("cpu", Source.GUEST, 0.5, 30, 5) for _ in range(10)),
        *(pt("mem", Source.HOST, 0.9, 400, 1) for _ in range(10)),
        *(pt("mem", Source.GUEST, 0.9, 300, 1) for _ in range(10)),
        *(pt("io", Source.HOST, 0.5, 40, 2000) for _ in range(10)),
        pt(None, Source.HOST, 2.0, 999, 99999),  # between phases: ignored
    ]
    r = requirement_of(pts)
    assert r.vcpus == pytest.approx(0.95)  # host view
    assert r.memory_mib == 300  # guest view, net of page cache
    assert r.iops == pytest.approx(2000)


def test_rounding_whole_vcpus_256_mib_steps_iops_to_ten() -> None:
    a = round_allocation(Requirement(vcpus=1.01, memory_mib=513, iops=1234.5))
    assert a == Allocation(vcpus=2, memory_mib=768, iops=1240)
    assert round_allocation(Requirement(0.1, 10, 0)) == Allocation(1, 512, None)


def test_shadow_measured_predictor_says_what_it_is() -> None:
    pts = [pt("cpu", Source.HOST, 0.9, 200, 100), pt("cpu", Source.GUEST, 0.9, 300, 100)]
    p = ShadowMeasuredPredictor(1.2).predict(pts, profile="smoke", load=200)
    assert p.method == "shadow-measured"
    assert "shadow-measured usage x1.2" in p.label
    assert p.recommended == Allocation(vcpus=2, memory_mib=512, iops=120)
    assert p.need.memory_mib == 300


def test_override_findings_quantify_the_risk() -> None:
    p = ShadowMeasuredPredictor(1.2).predict(
        [pt("cpu", Source.HOST, 3.4, 3000, 1000), pt("cpu", Source.GUEST, 3.4, 3000, 1000)],
        profile="web",
        load=None,
    )
    under = override_findings(p, Allocation(vcpus=2, memory_mib=4096, iops=None))
    assert [f.resource for f in under] == ["vcpus"]
    assert under[0].severity == "under-provisioned"
    assert under[0].message == "predicted P95 3.4 vCPU > 2 chosen: expect CPU contention"
    margin = override_findings(p, Allocation(vcpus=5, memory_mib=3072, iops=1100))
    assert {f.resource: f.severity for f in margin} == {
        "memory_mib": "below-margin",
        "iops": "below-margin",
    }
    assert override_findings(p, p.recommended) == []


def test_allocation_validation_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        Allocation(vcpus=0, memory_mib=512)
    assert caught.value.field == "vcpus"
    with pytest.raises(ConfigError) as caught:
        Allocation(vcpus=1, memory_mib=64)
    assert caught.value.field == "memory_mib"
