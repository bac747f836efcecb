"""The shadow's own measured usage times a margin: the engine for a smoke run
when no history model can answer. It is labelled as exactly that wherever it
is shown, because a 1-vCPU shadow's usage is a floor, not a forecast."""

from __future__ import annotations

from dataclasses import dataclass

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement, requirement_of, round_allocation
from vmshadow.domain.ramp import AppRun
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict.intervals import interval_detail, mean_half_width, symmetric

ENGINE = "shadow-measured"


def _half_widths(points: list[UsagePoint]) -> dict[str, float]:
    """How far each measured figure could move with other samples: the 90 %
    half-width of the mean of the series it is read from (the host's busy vCPUs
    and IOPS, the guest's memory). It speaks for the shadow's figure only; what
    the full VM adds to it no history says here."""
    host = [p for p in points if p.source is Source.HOST] or points
    guest = [p.mem_used_mib for p in points if p.source is Source.GUEST and p.mem_used_mib]
    mems = guest or [p.mem_used_mib for p in host if p.mem_used_mib is not None]
    return {
        "vcpus": mean_half_width([p.busy_vcpus for p in host]),
        "memory_mib": mean_half_width([float(m) for m in mems if m is not None]),
        "iops": mean_half_width([p.iops for p in host]),
    }


@dataclass(frozen=True)
class ShadowMeasuredPredictor:
    """What the shadow used, times the margin."""

    margin: float = 1.2

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,  # a smoke run has no application rates
    ) -> Prediction:
        need = requirement_of(shadow_points)
        padded = Requirement(
            vcpus=need.vcpus * self.margin,
            memory_mib=need.memory_mib * self.margin,
            iops=need.iops * self.margin,
        )
        lo, hi = symmetric(need, _half_widths(shadow_points))
        return Prediction(
            method=ENGINE,
            label=(
                f"shadow-measured usage x{self.margin:g} (no prediction model; "
                f"the expected load is recorded but not used)"
            ),
            history_size=0,
            margin=self.margin,
            need=need,
            recommended=round_allocation(padded),
            detail={
                "engine": ENGINE,
                "profile": profile,
                "load": load,
                "samples": len(shadow_points),
                **interval_detail(
                    lo,
                    hi,
                    basis="the sampling error of the shadow's own figures (90 % half-width "
                    "of their series' mean); not what a larger VM adds",
                ),
            },
        )
