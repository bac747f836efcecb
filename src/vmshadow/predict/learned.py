"""The ramp's extrapolation corrected by history: the engine for a launch or plan
with an expected load once enough loaded launches completed
(``predict.correction`` says what it learns and why it keeps its rate).

The need is the corrected P90, the recommendation that times the correction's
conformal margin; the median and the uncorrected extrapolation are in the
detail, beside the interval and the history behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import RESOURCES, Prediction, Requirement, round_allocation
from vmshadow.domain.ramp import AppRun
from vmshadow.domain.samples import UsagePoint
from vmshadow.predict.intervals import interval_detail
from vmshadow.predict.ramp import RampPredictor

if TYPE_CHECKING:
    # NumPy and scikit-learn come with the correction and the features: a
    # service with no correction saved (``predict.registry`` builds this engine
    # only then) does not pay for them at start-up.
    from vmshadow.predict.correction import Correction

ENGINE = "ramp+learned-correction"
NAMES = {"vcpus": "vCPU", "memory_mib": "memory", "iops": "IOPS"}


@dataclass(frozen=True)
class LearnedCorrectionPredictor:
    ramp: RampPredictor
    correction: Correction  # trained (``estimators`` set)
    shadow: Allocation  # the shadow's size, which its features are relative to

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,
    ) -> Prediction:
        import numpy as np

        from vmshadow.predict.correction import RAMP, correction_row
        from vmshadow.predict.features import series_from_points, shadow_features

        ex = self.ramp.extrapolation(shadow_points, profile=profile, load=load, app=app)
        feats = shadow_features(
            series_from_points(shadow_points, self.shadow.vcpus), self.shadow.memory_mib
        )
        beyond = ex.detail.get("beyond_ramp")
        x = correction_row(
            feats,
            shadow_vcpus=self.shadow.vcpus,
            shadow_memory_mib=self.shadow.memory_mib,
            base=ex.need,
            kind=RAMP,
            beyond_ramp=float(beyond) if isinstance(beyond, int | float) else float("nan"),
        )
        got = self.correction.predict(np.asarray(x), ex.need)
        need = Requirement(*(got[r]["p90"] for r in RESOURCES))
        median = Requirement(*(got[r]["median"] for r in RESOURCES))
        margins = {r: self.correction.margins[r] for r in RESOURCES}
        padded = Requirement(*(float(getattr(need, r)) * margins[r] for r in RESOURCES))
        c = self.correction
        history = c.records
        meta: dict[str, Any] = c.meta
        detail: dict[str, object] = {
            **ex.detail,
            "engine": ENGINE,
            "median": median.as_dict(),
            "p90": need.as_dict(),
            "margins": margins,
            "correction": {
                "records": history,
                "ramp_records": c.ramp_records,
                "imported_records": int(meta.get("imported_records", 0)),
                "target_under": meta.get("target_under"),
                "trained_at": meta.get("trained_at"),
                "held_out": meta.get("held_out"),
            },
            **interval_detail(
                {r: got[r]["lo"] for r in RESOURCES},
                {r: got[r]["hi"] for r in RESOURCES},
                coverage=float(meta.get("interval_coverage", 0.9)),
                basis=(
                    "split-conformal range of the realized/extrapolated ratio around the "
                    f"learned median, from models that never saw the job, on {c.ramp_records} "
                    "completed loaded launches"
                ),
                history_count=history,
            ),
        }
        margins_text = ", ".join(f"{NAMES[r]} {margins[r]:.2f}" for r in RESOURCES)
        label = (
            f"{ENGINE}: {ex.how}, corrected by a model learnt on {history} history records "
            f"({c.ramp_records} completed loaded launches); P90 x margin ({margins_text})"
        )
        return Prediction(
            method=ENGINE,
            label=label + "".join(f"; {n}" for n in ex.notes),
            history_size=history,
            margin=max(margins.values()),
            need=need,
            recommended=round_allocation(padded),
            detail=detail,
        )
