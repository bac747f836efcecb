"""The prediction engines by name, registered explicitly (``@register``), and how
each is built from the validated settings.

=========================  ==============================================  ==================
name                       what it answers                                 needs
=========================  ==============================================  ==================
shadow-measured            smoke: the shadow's own usage x margin           nothing
ramp-extrapolation         a load: the ramp's physical extrapolation        nothing
ramp+learned-correction    a load: the extrapolation corrected by history   a saved correction
quantile-model             smoke: the same work on a larger VM              saved models
=========================  ==============================================  ==================

A builder returns the engine, or None with the reason it cannot answer (no
model saved, too little history), which the chosen engine's label then says.
``predict.choice`` picks among them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction
from vmshadow.domain.ramp import AppRun
from vmshadow.domain.samples import UsagePoint
from vmshadow.predict import learned, measured, ramp
from vmshadow.predict.flavours import Flavour

QUANTILE_MODEL = "quantile-model"
MODELS_META = "models.json"  # persist.META_FILE, without importing scikit-learn
CORRECTION_META = "correction.json"  # persist.CORRECTION_META, likewise


class Engine(Protocol):
    def predict(
        self,
        shadow_points: list[UsagePoint],
        *,
        profile: str,
        load: float | None,
        target: Allocation | None = None,
        app: AppRun | None = None,
    ) -> Prediction: ...


@dataclass(frozen=True)
class Setup:
    """What every engine is built from (taken from the settings once)."""

    margin: float
    shadow: Allocation
    models_dir: Path
    learned_min_history: int = 20
    flavours: tuple[Flavour, ...] = ()


@dataclass(frozen=True)
class Built:
    engine: Engine | None
    note: str = ""  # why there is no engine, for the labels of the one that answers


Builder = Callable[[Setup], Built]
ENGINES: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        if name in ENGINES:
            raise ValueError(f"engine {name} registered twice")
        ENGINES[name] = builder
        return builder

    return add


def build(name: str, setup: Setup) -> Built:
    try:
        return ENGINES[name](setup)
    except KeyError:
        raise ValueError(f"no engine {name!r}; known: {', '.join(sorted(ENGINES))}") from None


@register(measured.ENGINE)
def _measured(setup: Setup) -> Built:
    return Built(measured.ShadowMeasuredPredictor(setup.margin))


def ramp_engine(setup: Setup) -> ramp.RampPredictor:
    return ramp.RampPredictor(
        ramp.profile_loads, setup.shadow.vcpus, setup.margin, ramp.profile_memory_slope
    )


@register(ramp.ENGINE)
def _ramp(setup: Setup) -> Built:
    return Built(ramp_engine(setup))


@register(learned.ENGINE)
def _learned(setup: Setup) -> Built:
    need = setup.learned_min_history
    # Imported only when a correction was saved: scikit-learn costs a second or
    # two at start-up, which a service without history should not pay.
    none = Built(None, f"no learned correction trained; it needs {need} history records")
    if not (setup.models_dir / CORRECTION_META).is_file():
        return none
    from vmshadow.predict.persist import load_correction

    c = load_correction(setup.models_dir)
    if c is None:  # removed since the check above
        return none
    if c.estimators is None or c.ramp_records < need:
        return Built(None, f"{c.ramp_records} history records; the learned correction needs {need}")
    return Built(learned.LearnedCorrectionPredictor(ramp_engine(setup), c, setup.shadow))


@register(QUANTILE_MODEL)
def _quantile(setup: Setup) -> Built:
    if not (setup.models_dir / MODELS_META).is_file():
        return Built(None, "no history model trained")
    from vmshadow.predict.predictor import HistoryModelPredictor

    model = HistoryModelPredictor.load(
        setup.models_dir, shadow=setup.shadow, margin=setup.margin, flavours=setup.flavours
    )
    if model.method_available != QUANTILE_MODEL:
        note = (
            f"history model not usable: {model.history_size} records, "
            f"it needs {model.min_history}"
        )
        return Built(None, note)
    return Built(model)
