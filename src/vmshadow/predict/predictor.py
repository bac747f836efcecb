"""The history-backed predictor the controller can plug in behind ``Predictor``.

Given a shadow's samples, it predicts per resource the median and the P90 of
what a VM of the requested size will need (the learnt quantile models), and
recommends the P90 times the margin, cut to the requested size (a VM cannot
use more than it has: the model learnt from VMs that could not either) and
rounded to whole vCPUs and 256 MiB steps, or to the cheapest flavour of a
catalogue that covers all three resources.

``Prediction.need`` is the P90 (the figure the margin multiplies and the
calibration was done on); the median is in ``detail``. With too little
history it falls back, and says so in ``method`` and ``label``: to the
``fallback`` predictor when one is given (the controller's ramp
extrapolation), else to the size-based physical extrapolation.

    >>> from vmshadow.domain.allocation import Allocation
    >>> p = HistoryModelPredictor(None, shadow=Allocation(1, 512))
    >>> p.predict_from(Requirement(0.5, 300, 40), {}, target=Allocation(4, 4096)).method
    'physical-extrapolation'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import (
    RESOURCES,
    Prediction,
    Predictor,
    Requirement,
    requirement_of,
    round_allocation,
)
from vmshadow.domain.ramp import AppRun
from vmshadow.domain.samples import UsagePoint
from vmshadow.predict.features import feature_row, series_from_points, shadow_features
from vmshadow.predict.flavours import Flavour, cheapest_covering
from vmshadow.predict.intervals import interval_detail
from vmshadow.predict.margin import DEFAULT_MARGIN
from vmshadow.predict.models import MIN_HISTORY, UPPER, ModelSet
from vmshadow.predict.persist import load_models
from vmshadow.predict.physical import physical_need


def _cap(target: Allocation, res: str) -> float:
    value = getattr(target, res)
    return float("inf") if value is None else float(value)


@dataclass(frozen=True)
class HistoryModelPredictor:
    models: ModelSet | None
    shadow: Allocation  # the shadow's size
    margin: float = DEFAULT_MARGIN  # when there is no model
    flavours: Sequence[Flavour] = field(default_factory=tuple)
    fallback: Predictor | None = None
    min_history: int = MIN_HISTORY

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        shadow: Allocation,
        margin: float = DEFAULT_MARGIN,
        flavours: Sequence[Flavour] = (),
        fallback: Predictor | None = None,
    ) -> HistoryModelPredictor:
        """From ``<data_dir>/models``; no saved model means the fallback is used."""
        return cls(load_models(directory), shadow, margin, tuple(flavours), fallback)

    @property
    def history_size(self) -> int:
        return self.models.history_size if self.models else 0

    @property
    def method_available(self) -> str:
        """What ``predict`` would use: the learnt model or the physical fallback."""
        return "quantile-model" if self._usable() else "physical-extrapolation"

    def _usable(self) -> bool:
        return bool(self.models and self.models.models and self.history_size >= self.min_history)

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,  # it predicts the shadow's own work: no rates
    ) -> Prediction:
        if not self._usable() and self.fallback is not None:
            p = self.fallback.predict(shadow_points, profile=profile, load=load, target=target)
            return dataclasses.replace(
                p,
                label=f"{p.label} ({self._history_text()}: no history model)",
                history_size=self.history_size,
            )
        series = series_from_points(shadow_points, self.shadow.vcpus)
        feats = shadow_features(series, self.shadow.memory_mib)
        p = self.predict_from(requirement_of(shadow_points), feats, target=target)
        p.detail.update(profile=profile, load=load, samples=len(shadow_points))
        return p

    def _history_text(self) -> str:
        if not self.models:
            return "no history"
        jobs = self.models.meta.get("jobs", "?")
        return f"{self.history_size} history records from {jobs} jobs"

    def predict_from(
        self,
        shadow_need: Requirement,
        features: Mapping[str, float],
        *,
        target: Allocation | None,
    ) -> Prediction:
        """The prediction from the shadow's measured requirement and its features."""
        size = target or self.shadow
        detail: dict[str, Any] = {"target": size.as_dict(), "shadow_need": shadow_need.as_dict()}
        if target is None:
            detail["note"] = "no requested size: predicted for the shadow's own size"
        if self._usable():
            assert self.models is not None and self.models.models is not None
            x = np.asarray(
                [
                    feature_row(
                        features,
                        shadow_vcpus=self.shadow.vcpus,
                        shadow_memory_mib=self.shadow.memory_mib,
                        target_vcpus=size.vcpus,
                        target_memory_mib=size.memory_mib,
                    )
                ]
            )
            quant: dict[float, dict[str, float]] = {0.5: {}, UPPER: {}}
            for res, model in self.models.models.items():
                base = np.asarray([float(getattr(shadow_need, res))])
                for q in quant:
                    quant[q][res] = float(model.predict(x, base, q, _cap(size, res))[0])
            need = Requirement(**quant[UPPER])
            margins = {r: self.models.margins.get(r, self.margin) for r in RESOURCES}
            method = "quantile-model"
            label = (
                f"quantile model: P90 x {self.models.meta.get('margin_mode', 'fixed')} "
                f"margin {_margins_text(margins)}, trained on {self._history_text()}"
            )
            detail["median"] = Requirement(**quant[0.5]).as_dict()
            detail["trained_at"] = self.models.meta.get("trained_at")
            if self.models.meta.get("held_out"):
                detail["held_out"] = self.models.meta["held_out"]
        else:
            scaled = physical_need(
                shadow_need,
                shadow_vcpus=self.shadow.vcpus,
                shadow_memory_mib=self.shadow.memory_mib,
                target_vcpus=size.vcpus,
                target_memory_mib=size.memory_mib,
            )
            need = scaled.need
            margins = dict.fromkeys(RESOURCES, self.margin)
            method = "physical-extrapolation"
            label = (
                f"physical extrapolation from the shadow's size x{self.margin:g} "
                f"({self._history_text()}; the model needs {self.min_history} records)"
            )
            detail["ran_out"] = {"vcpus": scaled.cpu_bound, "memory_mib": scaled.memory_bound}
        padded = {r: float(getattr(need, r)) * margins[r] for r in RESOURCES}
        capped = [r for r in RESOURCES if padded[r] > _cap(size, r)]
        for r in capped:
            padded[r] = _cap(size, r)
        detail.update(p90=need.as_dict(), margins=margins, capped_at_request=capped)
        detail.update(engine=method, **self._interval(method, need, detail, margins))
        recommended = self._round(Requirement(**padded), detail)
        if capped:
            label += f"; cut to the requested size for {', '.join(capped)}"
        return Prediction(
            method=method,
            label=label,
            history_size=self.history_size,
            margin=max(margins.values()),
            need=need,
            recommended=recommended,
            detail=detail,
        )

    def _interval(
        self, method: str, need: Requirement, detail: dict[str, Any], margins: dict[str, float]
    ) -> dict[str, object]:
        """The quantile model's range: up to the P90 x its conformal margin (which
        holds ``1 - target_under`` of held-out cases) or, with a fixed margin, the
        P90 itself; down to the bound as far below the median in log space (the
        log-ratio taken as symmetric about its median), so two-sided it holds
        ``1 - 2 x`` the upper bound's tail. The physical fallback has no history
        to argue a coverage from: its range runs from the shadow's own figure to
        its scaling, with no coverage stated."""
        if method != "quantile-model":
            shadow = detail["shadow_need"]
            lo = {r: min(float(shadow[r]), float(getattr(need, r))) for r in RESOURCES}
            hi = {r: float(getattr(need, r)) for r in RESOURCES}
            return {
                **interval_detail(lo, hi, basis="the shadow's figure to its physical scaling"),
                "interval_coverage": None,
            }
        assert self.models is not None
        calibrated = self.models.meta.get("margin_mode") == "calibrated"
        tail = float(self.models.meta.get("target_under", 0.05)) if calibrated else 1 - UPPER
        median = detail["median"]
        hi = {r: float(getattr(need, r)) * (margins[r] if calibrated else 1.0) for r in RESOURCES}
        lo = {r: float(median[r]) ** 2 / hi[r] if hi[r] > 0 else 0.0 for r in RESOURCES}
        return interval_detail(
            lo,
            hi,
            coverage=round(1 - 2 * tail, 4),
            basis="up to the P90"
            + (" x its conformal margin" if calibrated else "")
            + ", down as far below the median in log space",
            history_count=self.history_size,
        )

    def _round(self, padded: Requirement, detail: dict[str, Any]) -> Allocation:
        rounded = round_allocation(padded)
        if not self.flavours:
            return rounded
        fl = cheapest_covering(self.flavours, padded)
        detail["flavour"] = fl.name if fl else None
        if fl is None:
            detail["flavour_note"] = "no flavour covers the recommendation: rounded instead"
            return rounded
        return Allocation(fl.vcpus, fl.memory_mib, fl.iops if fl.iops else rounded.iops)


def _margins_text(margins: Mapping[str, float]) -> str:
    values = set(margins.values())
    if len(values) == 1:
        return f"{values.pop():g}"
    names = {"vcpus": "vCPU", "memory_mib": "memory", "iops": "IOPS"}
    return "(" + ", ".join(f"{names[r]} {margins[r]:g}" for r in RESOURCES) + ")"
