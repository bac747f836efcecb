"""Predictions, and what an override below one risks.

Until the prediction engine lands (it plugs in behind ``Predictor``), the
controller uses :class:`ShadowMeasuredPredictor`: the shadow's own measured
requirement times a fixed margin. It is labelled as exactly that everywhere it
is shown, because a 1-vCPU shadow's usage is a floor, not a forecast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from vmshadow.domain.allocation import MEMORY_STEP_MIB, Allocation
from vmshadow.domain.samples import Source, UsagePoint, percentile

RESOURCES = ("vcpus", "memory_mib", "iops")


@dataclass(frozen=True)
class Requirement:
    """P95 busy vCPUs, peak memory used (net of page cache), P95 IOPS."""

    vcpus: float
    memory_mib: float
    iops: float

    def as_dict(self) -> dict[str, float]:
        return {
            "vcpus": round(self.vcpus, 3),
            "memory_mib": round(self.memory_mib, 1),
            "iops": round(self.iops, 1),
        }


def requirement_of(points: Iterable[UsagePoint]) -> Requirement:
    """The requirement over a run: per phase P95 / peak, then the worst phase.

    CPU and IOPS come from the host view (it does not trust the guest); memory
    from the guest's own view (net of page cache), else the balloon's.
    Phases are parts of one workload run one after another, so the VM must
    cover the most demanding of them.
    """
    everything = list(points)
    by_phase: dict[str | None, list[UsagePoint]] = {}
    for p in everything:
        if p.phase_id is not None:
            by_phase.setdefault(p.phase_id, []).append(p)
    if not by_phase:  # an observed full VM has no phases: the whole run counts
        by_phase = {None: everything}
    cpu = mem = iops = 0.0
    for pts in by_phase.values():
        host = [p for p in pts if p.source is Source.HOST] or pts
        guest = [p for p in pts if p.source is Source.GUEST]
        cpu = max(cpu, _nz(percentile([p.busy_vcpus for p in host], 95)))
        iops = max(iops, _nz(percentile([p.iops for p in host], 95)))
        mems = [p.mem_used_mib for p in (guest or host) if p.mem_used_mib is not None]
        mem = max(mem, max(mems, default=0.0))
    return Requirement(vcpus=cpu, memory_mib=mem, iops=iops)


def _nz(v: float) -> float:
    return 0.0 if math.isnan(v) else v


def round_allocation(need: Requirement, *, min_memory_mib: int = 512) -> Allocation:
    """Whole vCPUs, memory in 256 MiB steps, IOPS to the next 10."""
    vcpus = max(1, math.ceil(need.vcpus - 1e-9))
    mem = max(min_memory_mib, math.ceil(need.memory_mib / MEMORY_STEP_MIB) * MEMORY_STEP_MIB)
    iops = max(10, math.ceil(need.iops / 10) * 10) if need.iops > 0 else None
    return Allocation(vcpus=vcpus, memory_mib=mem, iops=iops)


@dataclass(frozen=True)
class Prediction:
    method: str  # stable code, e.g. "shadow-measured"
    label: str  # what the user reads
    history_size: int
    margin: float
    need: Requirement  # predicted requirement before the margin
    recommended: Allocation
    detail: dict[str, object] = field(default_factory=dict)


class Predictor(Protocol):
    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
    ) -> Prediction: ...


@dataclass(frozen=True)
class ShadowMeasuredPredictor:
    """The interim predictor: what the shadow used, times the margin."""

    margin: float = 1.2

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
    ) -> Prediction:
        need = requirement_of(shadow_points)
        padded = Requirement(
            vcpus=need.vcpus * self.margin,
            memory_mib=need.memory_mib * self.margin,
            iops=need.iops * self.margin,
        )
        return Prediction(
            method="shadow-measured",
            label=(
                f"shadow-measured usage x{self.margin:g} (interim: no prediction model yet; "
                f"the expected load is recorded but not used)"
            ),
            history_size=0,
            margin=self.margin,
            need=need,
            recommended=round_allocation(padded),
            detail={"profile": profile, "load": load, "samples": len(shadow_points)},
        )


@dataclass(frozen=True)
class Finding:
    resource: str
    severity: str  # under-provisioned (below the need) | below-margin (within the margin)
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "severity": self.severity, "message": self.message}


_CONSEQUENCE = {
    "vcpus": "expect CPU contention",
    "memory_mib": "expect swapping or the OOM killer",
    "iops": "expect I/O queueing and latency",
}
_UNIT = {"vcpus": "vCPU", "memory_mib": "MiB", "iops": "IOPS"}
_WHAT = {"vcpus": "P95", "memory_mib": "peak", "iops": "P95"}


def override_findings(prediction: Prediction, chosen: Allocation) -> list[Finding]:
    """What an allocation other than the recommendation risks, resource by resource."""
    found = []
    for res in RESOURCES:
        need = float(getattr(prediction.need, res))
        rec = getattr(prediction.recommended, res)
        got = getattr(chosen, res)
        if res == "iops" and got is None:
            continue  # no cap: nothing to run short of
        if rec is None or need <= 0:
            continue
        unit = _UNIT[res]
        if got < need:
            found.append(
                Finding(
                    res,
                    "under-provisioned",
                    f"predicted {_WHAT[res]} {need:.4g} {unit} > {got} chosen: {_CONSEQUENCE[res]}",
                )
            )
        elif got < rec:
            found.append(
                Finding(
                    res,
                    "below-margin",
                    f"{got} {unit} chosen is below the recommended {rec} {unit}: "
                    f"less than the x{prediction.margin:g} safety margin over the predicted "
                    f"{_WHAT[res]} {need:.4g} {unit}",
                )
            )
    return found
