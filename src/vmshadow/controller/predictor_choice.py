"""Which prediction engine answers a transition, and the flavour rounding of its answer.

The learnt history model (``vmshadow model train``, saved in
``<data_dir>/models``) was trained on pairs of runs of the *same work* on a
small VM and on a larger one: it answers "how does this work's usage grow on
the requested size". A profile transition with an expected load asks another
question, "what does this work need at N units/s", which only the ramp's
per-unit cost answers; applying the size model on top of it would count the
growth twice. So:

- no expected load (the shadow ran the very work: smoke) and a usable model:
  the model;
- an expected load: the profile's ramp extrapolation (smoke without a model:
  the shadow's measured usage x margin);

and every answer says which engine gave it and how much history stood behind
it. A flavour catalogue, when configured, replaces the whole-vCPU/256 MiB
rounding with its cheapest flavour covering all three resources, whichever
engine answered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmshadow.config import Settings
from vmshadow.controller.context import ProfilePredictor
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Predictor, Requirement
from vmshadow.domain.ramp import AppRun
from vmshadow.domain.samples import UsagePoint
from vmshadow.predict.flavours import Flavour, cheapest_covering, read_flavours


@dataclass(frozen=True)
class ChosenPredictor:
    ramp: Predictor
    model: Predictor | None = None  # a HistoryModelPredictor with enough history
    model_note: str = ""  # why there is no model, for the labels
    flavours: Sequence[Flavour] = ()

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,
    ) -> Prediction:
        """``app``: what an application profile's command achieved per step
        (``vmshadow plan --image``), which the ramp fits against."""
        if self.model is not None and load is None:
            p = self.model.predict(shadow_points, profile=profile, load=load, target=target)
        elif app is not None:
            # Only the ramp knows an application's achieved rates.
            ramp: Any = self.ramp
            p = ramp.predict(shadow_points, profile=profile, load=load, target=target, app=app)
        else:
            p = self.ramp.predict(shadow_points, profile=profile, load=load, target=target)
            note = (
                "history model not used: it predicts the same work on a larger VM, "
                "not a different load"
                if self.model is not None
                else self.model_note
            )
            if note:
                p = dataclasses.replace(p, label=f"{p.label} ({note})")
        return self._flavoured(p)

    def _flavoured(self, p: Prediction) -> Prediction:
        if not self.flavours or "flavour" in p.detail:
            return p
        margins = p.detail.get("margins")
        padded = Requirement(
            *(
                float(getattr(p.need, r))
                * (float(margins[r]) if isinstance(margins, dict) and r in margins else p.margin)
                for r in ("vcpus", "memory_mib", "iops")
            )
        )
        fl = cheapest_covering(self.flavours, padded)
        if fl is None:
            detail = {**p.detail, "flavour": None}
            detail["flavour_note"] = "no flavour covers the recommendation: rounded instead"
            return dataclasses.replace(p, detail=detail)
        rec = Allocation(fl.vcpus, fl.memory_mib, fl.iops if fl.iops else p.recommended.iops)
        return dataclasses.replace(
            p,
            recommended=rec,
            label=f"{p.label}; flavour {fl.name}",
            detail={**p.detail, "flavour": fl.name},
        )


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


def build_predictor(settings: Settings) -> ChosenPredictor:
    """The controller's and ``vmshadow plan``'s predictor for these settings.
    Raises ConfigError when the saved models or the flavour file are unreadable:
    a service that silently ignored its trained model would mislead."""
    shadow = Allocation(settings.shadow.vcpus, settings.shadow.memory_mib)
    margin = settings.controller.margin
    ramp = ProfilePredictor(margin, shadow.vcpus)
    flavours = tuple(read_flavours(settings.flavours_file)) if settings.flavours_file else ()
    where = models_dir(settings)
    # Imported only when a model was saved: scikit-learn costs a second or two
    # at start-up, which a service without history should not pay.
    if not (where / "models.json").is_file():
        return ChosenPredictor(ramp, None, "no history model trained", flavours)
    from vmshadow.predict.predictor import HistoryModelPredictor

    model = HistoryModelPredictor.load(where, shadow=shadow, margin=margin, flavours=flavours)
    if model.method_available != "quantile-model":
        note = (
            f"history model not usable: {model.history_size} records, "
            f"it needs {model.min_history}"
        )
        return ChosenPredictor(ramp, None, note, flavours)
    return ChosenPredictor(ramp, model, "", flavours)


@dataclass
class LivePredictor:
    """``build_predictor`` again whenever the saved models change, so that a
    running service uses a model trained after it started (``vmshadow model
    train`` while it runs) without a restart."""

    settings: Settings
    _key: tuple[float, float] | None = None
    _current: ChosenPredictor | None = None

    def _stamp(self) -> tuple[float, float]:
        def mtime(p: Path | None) -> float:
            try:
                return p.stat().st_mtime if p else 0.0
            except OSError:
                return 0.0

        return (
            mtime(models_dir(self.settings) / "models.json"),
            mtime(self.settings.flavours_file),
        )

    def current(self) -> ChosenPredictor:
        key = self._stamp()
        if self._current is None or key != self._key:
            self._current, self._key = build_predictor(self.settings), key
        return self._current

    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,
    ) -> Prediction:
        return self.current().predict(
            shadow_points, profile=profile, load=load, target=target, app=app
        )
