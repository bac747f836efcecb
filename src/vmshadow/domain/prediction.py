"""Predictions, and what an override below one risks.

The value types (``Requirement``, ``Prediction``) and the ``Predictor``
protocol the controller calls; the engines that implement it live in
``vmshadow.predict`` (``predict.registry`` names them).

Every engine's ``Prediction.detail`` carries ``interval`` (per resource a
range for the need, before margin and rounding), ``interval_coverage`` (the
share of cases the range is meant to hold), ``interval_basis`` (how it was
derived, in words) and ``history_count`` (history records behind the answer).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from vmshadow.domain.allocation import MEMORY_STEP_MIB, Allocation
from vmshadow.domain.samples import Source, UsagePoint, percentile
from vmshadow.domain.shadow import OsIdle, ShadowOs

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


# The least ``round_allocation`` gives a positive need (an IOPS need of 0 gets
# no cap at all): a VM that realizes no more than this is never short of it,
# whatever was predicted.
ALLOCATION_FLOOR = {"vcpus": 1.0, "memory_mib": 512.0, "iops": 10.0}


def round_allocation(need: Requirement, *, min_memory_mib: int = 512) -> Allocation:
    """Whole vCPUs, memory in 256 MiB steps, IOPS to the next 10."""
    vcpus = max(int(ALLOCATION_FLOOR["vcpus"]), math.ceil(need.vcpus - 1e-9))
    mem = max(min_memory_mib, math.ceil(need.memory_mib / MEMORY_STEP_MIB) * MEMORY_STEP_MIB)
    least_iops = int(ALLOCATION_FLOOR["iops"])
    iops = max(least_iops, math.ceil(need.iops / 10) * 10) if need.iops > 0 else None
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


@dataclass(frozen=True)
class StoredPrediction:
    """A prediction as the store read it (``Store.latest_prediction``): its id
    (what a confirmation names) and time, and its figures as stored, the need
    inside ``detail["need"]``. ``controller.policy.prediction_of`` makes it a
    ``Prediction`` again."""

    id: int
    transition_id: str
    created_at: datetime  # timezone-aware UTC
    method: str
    label: str
    history_size: int
    margin: float
    rec_vcpus: int
    rec_memory_mib: int
    rec_iops: int | None
    detail: dict[str, Any]


class Predictor(Protocol):
    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
    ) -> Prediction: ...


def idle_footprint(
    points: Iterable[UsagePoint], *, processes: int | None = None, settled: bool = True
) -> OsIdle:
    """The OS at rest from its idle phase's points: memory from the guest's
    view (net of page cache, its peak), busy vCPUs from the host's (its mean;
    the guest's where the host saw nothing)."""
    pts = list(points)
    host = [p.busy_vcpus for p in pts if p.source is Source.HOST]
    guest = [p for p in pts if p.source is Source.GUEST]
    cpu = host or [p.busy_vcpus for p in guest]
    mems = [p.mem_used_mib for p in (guest or pts) if p.mem_used_mib is not None]
    return OsIdle(
        memory_mib=max(mems, default=0.0),
        vcpus=statistics.fmean(cpu) if cpu else 0.0,
        processes=processes,
        settled=settled,
    )


def with_shadow_os(p: Prediction, shadow_os: ShadowOs | None, idle: OsIdle | None) -> Prediction:
    """``p`` with the OS its shadow ran (``detail["shadow_os"]``) and, for the
    target's own OS, its idle footprint (``detail["os_idle"]``) as a floor.

    The shadow's measurements already hold its OS (the guest's memory used
    is the OS's and the workload's), so the need is raised only where it
    came out below the OS alone: the VM never gets less than its idle OS plus
    a workload that needs nothing. A raised need raises the recommendation
    with it, at the prediction's margin.
    """
    detail = dict(p.detail)
    if shadow_os is not None:
        detail["shadow_os"] = shadow_os.as_dict()
    if idle is None:
        return dataclasses.replace(p, detail=detail)
    detail["os_idle"] = idle.as_dict()
    need = Requirement(
        vcpus=max(p.need.vcpus, idle.vcpus),
        memory_mib=max(p.need.memory_mib, idle.memory_mib),
        iops=p.need.iops,
    )
    if need == p.need:
        return dataclasses.replace(p, detail=detail)
    margins = detail.get("margins")

    def margin(res: str) -> float:
        if isinstance(margins, dict) and isinstance(margins.get(res), int | float):
            return float(margins[res])
        return p.margin

    floor = round_allocation(
        Requirement(need.vcpus * margin("vcpus"), need.memory_mib * margin("memory_mib"), 0.0)
    )
    rec = p.recommended
    recommended = Allocation(
        vcpus=max(rec.vcpus, floor.vcpus),
        memory_mib=max(rec.memory_mib, floor.memory_mib),
        iops=rec.iops,
    )
    raised = [r for r in ("vcpus", "memory_mib") if getattr(need, r) > getattr(p.need, r)]
    detail["raised_to_os_idle"] = raised
    interval = detail.get("interval")
    if isinstance(interval, dict):
        # The floor holds for every case the interval covers: no bound below it.
        detail["interval"] = {
            r: [max(float(b), float(getattr(need, r))) for b in bounds]
            if r in raised and isinstance(bounds, list | tuple)
            else bounds
            for r, bounds in interval.items()
        }
    return dataclasses.replace(p, need=need, recommended=recommended, detail=detail)


def _figure(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def shadow_os_notes(detail: Mapping[str, object]) -> list[str]:
    """The prediction's lines about its shadow's OS, as the CLI and the web UI
    show them: the target OS at idle, or why the built-in OS stood in."""
    notes = []
    used = detail.get("shadow_os")
    idle = detail.get("os_idle")
    if isinstance(idle, Mapping):
        procs = idle.get("processes")
        line = (
            f"Your OS at idle: {_figure(idle.get('memory_mib')):.0f} MiB, "
            f"{_figure(idle.get('vcpus')):.2f} vCPU"
        )
        if isinstance(procs, int):
            line += f", {procs} processes"
        raised = detail.get("raised_to_os_idle")
        if isinstance(raised, list) and raised:
            line += f"; the need was raised to it for {', '.join(map(str, raised))}"
        else:
            line += "; the need includes it"
        if idle.get("settled") is False:
            line += " (measured while its boot was still busy: on the high side)"
        notes.append(line + ".")
    if isinstance(used, Mapping) and used.get("used") == "builtin":
        notes.append(
            f"The shadow ran vmshadow's built-in OS, not the OS of image {used.get('image')}: "
            f"{used.get('reason') or 'no reason recorded'}. Your OS's own footprint is not "
            "in this prediction."
        )
    elif isinstance(used, Mapping) and used.get("used") == "target" and not idle:
        notes.append(f"The shadow ran the OS of image {used.get('image')}.")
    return notes


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
