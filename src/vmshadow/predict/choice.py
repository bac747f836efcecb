"""Which registered engine (``predict.registry``) answers a prediction, and the
flavour rounding of its answer.

- an expected load (every real launch): the ramp's extrapolation corrected
  by history (``ramp+learned-correction``) once enough loaded launches
  completed, else the extrapolation alone, whose label says how much history
  there is and how much the correction needs;
- no expected load (smoke: the shadow ran the very work): the quantile model
  of the same work on a larger VM when one is usable, else the shadow's
  measured usage x margin.

The quantile model is never used for a load: it was trained on pairs of runs
of the *same work* on a small and a larger VM, and a load asks "what does this
work need at N units/s", which the ramp and its correction answer.

A flavour catalogue, when configured, replaces the whole-vCPU/256 MiB
rounding with its cheapest flavour covering all three resources, whichever
engine answered.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmshadow.config import Settings
from vmshadow.domain.allocation import Allocation, with_burst
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.ramp import AppRun
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.predict import learned, measured, ramp
from vmshadow.predict.flavours import Flavour, cheapest_covering, read_flavours
from vmshadow.predict.registry import (
    CORRECTION_META,
    ENGINES,
    MODELS_META,
    QUANTILE_MODEL,
    Built,
    Engine,
    Setup,
    build,
)
from vmshadow.predict.tokenbucket import recommend_bucket
from vmshadow.workloads.catalog import SMOKE


def engine_for(profile: str, load: float | None, available: Mapping[str, Engine]) -> str:
    """The name of the engine that answers ``profile`` at ``load``."""
    if profile == SMOKE or load is None:
        if load is None and QUANTILE_MODEL in available:
            return QUANTILE_MODEL
        # A workload profile without a load is refused by the ramp itself.
        return measured.ENGINE if profile == SMOKE else ramp.ENGINE
    return learned.ENGINE if learned.ENGINE in available else ramp.ENGINE


@dataclass(frozen=True)
class ChosenPredictor:
    engines: Mapping[str, Built]  # every registered engine, built or with why not
    flavours: Sequence[Flavour] = ()

    @property
    def available(self) -> dict[str, Engine]:
        return {n: b.engine for n, b in self.engines.items() if b.engine is not None}

    def note(self, name: str) -> str:
        built = self.engines.get(name)
        return built.note if built is not None else ""

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
        available = self.available
        name = engine_for(profile, load, available)
        p = available[name].predict(
            shadow_points, profile=profile, load=load, target=target, app=app
        )
        # The engine that would have answered with more history says why it did not.
        missing = (
            learned.ENGINE
            if name == ramp.ENGINE
            else QUANTILE_MODEL
            if name == measured.ENGINE
            else None
        )
        note = self.note(missing) if missing else ""
        if note:
            p = dataclasses.replace(p, label=f"{p.label} ({note})")
        return with_bucket(self._flavoured(p), shadow_points)

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


def with_bucket(p: Prediction, shadow_points: Sequence[UsagePoint]) -> Prediction:
    """``p`` with a burst rate and length over its IOPS cap (``predict.tokenbucket``),
    shaped by the shadow's own I/O series: the rate alone made a bursty disk
    wait while a mean-sized cap sat unused. The rate stays the engine's; the
    burst is kept in ``detail["iops_bucket"]`` for the launch (``with_burst``)."""
    rate = p.recommended.iops
    if rate is None or "iops_bucket" in p.detail:
        return p
    host = [x for x in shadow_points if x.source is Source.HOST]
    # The I/O phases when there are any: the CPU and memory phases' disk is idle.
    io = [x for x in host if x.phase_id and x.phase_id.endswith("-io")] or host
    bucket = recommend_bucket(float(rate), 1.0, [(x.t, x.read_iops + x.write_iops) for x in io])
    burst = max(rate, math.ceil(bucket.burst or rate))
    shape = {"rate": rate, "burst": burst, "burst_s": bucket.burst_s}
    return dataclasses.replace(
        p,
        recommended=with_burst(p.recommended, shape),
        detail={**p.detail, "iops_bucket": shape},
    )


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


def setup_of(settings: Settings) -> Setup:
    """Raises ConfigError when the flavour file is unreadable."""
    flavours = tuple(read_flavours(settings.flavours_file)) if settings.flavours_file else ()
    return Setup(
        margin=settings.controller.margin,
        shadow=Allocation(settings.shadow.vcpus, settings.shadow.memory_mib),
        models_dir=models_dir(settings),
        learned_min_history=settings.controller.learned_min_history,
        flavours=flavours,
    )


def build_predictor(settings: Settings) -> ChosenPredictor:
    """The controller's and ``vmshadow plan``'s predictor for these settings.
    Raises ConfigError when the saved models or the flavour file are unreadable:
    a service that silently ignored its trained model would mislead."""
    setup = setup_of(settings)
    return ChosenPredictor({name: build(name, setup) for name in ENGINES}, setup.flavours)


@dataclass
class LivePredictor:
    """``build_predictor`` again whenever the saved models (or the correction)
    change, so that a running service uses a model trained after it started
    (``vmshadow model train`` while it runs) without a restart."""

    settings: Settings
    _key: tuple[float, ...] | None = None
    _current: ChosenPredictor | None = field(default=None)

    def _stamp(self) -> tuple[float, ...]:
        def mtime(p: Path | None) -> float:
            try:
                return p.stat().st_mtime if p else 0.0
            except OSError:
                return 0.0

        where = models_dir(self.settings)
        return (
            mtime(where / MODELS_META),
            mtime(where / CORRECTION_META),
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
