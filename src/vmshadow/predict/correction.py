"""The learned correction of a physical extrapolation, trained on history.

A launch with an expected load is predicted by the ramp's physical
extrapolation (``predict.ramp``). Completed launches (history rows of source
``vmshadow``) record that *uncorrected* extrapolation beside what the VM
really used; imported pairs (Lumos, sysstat) have an analogue, the physical
scaling of the small run to the large VM (``predict.physical``). Per resource
this module learns the ratio realized / extrapolated, in log space:

- a median and a P90 of ``log((realized + e) / (extrapolated + e))`` by
  gradient-boosted quantile regression (``models.PARAMS``: shallow, regularised;
  with a few dozen records it is close to the plain quantiles of the ratio),
  from the shadow's features, the extrapolation itself, the shadow's size,
  how far beyond the ramp it reached and which kind of extrapolation it was,
  so imported pairs inform the fit without standing in for launches;
- a conformal margin on the P90 and a conformal interval, both from models
  that never saw the case's job (job-grouped folds), calibrated on the records
  of the kind asked about (ramp extrapolations) only: a new loaded launch is
  exchangeable with past loaded launches, not with Lumos pairs. So
  ``P(realized > P90 x margin) <= target_under`` and the interval holds
  ``coverage`` of the cases, under that exchangeability.

Never names: no job, profile or VM type name is a feature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from vmshadow.domain.prediction import ALLOCATION_FLOOR, RESOURCES, Requirement
from vmshadow.predict.conformal import conformal_quantile, rank_down, rank_up, scores
from vmshadow.predict.features import SHADOW_FEATURES
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.intervals import COVERAGE
from vmshadow.predict.margin import DEFAULT_TARGET_UNDER
from vmshadow.predict.metrics import under_and_waste
from vmshadow.predict.models import CALIBRATION_FOLDS, EPS, PARAMS, UPPER
from vmshadow.predict.physical import physical_need
from vmshadow.predict.sar import Floats

RAMP = "ramp"  # the base is a ramp's extrapolation (a completed loaded launch)
PHYSICAL = "physical"  # the base is the physical scaling of an imported pair's small run
CORRECTION_FEATURES = (
    *SHADOW_FEATURES,
    "shadow_vcpus",
    "shadow_memory_gib",
    "base_vcpus_log",
    "base_memory_log",
    "base_iops_log",
    "base_is_ramp",
    "beyond_ramp_log",
)
# The fewest calibration records a 95 % conformal margin exists for:
# ceil((n + 1) * 0.95) <= n from n = 19.
CONFORMAL_MIN = 19


def correction_row(
    features: dict[str, float],
    *,
    shadow_vcpus: int,
    shadow_memory_mib: int,
    base: Requirement,
    kind: str,
    beyond_ramp: float = math.nan,
) -> list[float]:
    """One row in the order of :data:`CORRECTION_FEATURES` (NaN where unknown)."""
    return [
        *(float(features.get(n, math.nan)) for n in SHADOW_FEATURES),
        float(shadow_vcpus),
        shadow_memory_mib / 1024,
        math.log1p(max(base.vcpus, 0.0)),
        math.log1p(max(base.memory_mib, 0.0)),
        math.log1p(max(base.iops, 0.0)),
        1.0 if kind == RAMP else 0.0,
        math.log(beyond_ramp) if beyond_ramp > 0 else math.nan,
    ]


def base_of(record: HistoryRecord) -> tuple[str, Requirement]:
    """What the record's realized requirement is compared with: the ramp's
    recorded extrapolation, else the physical scaling of the shadow's run."""
    if record.extrapolated is not None:
        return RAMP, record.extrapolated
    scaled = physical_need(
        record.shadow.need,
        shadow_vcpus=record.shadow.size.vcpus,
        shadow_memory_mib=record.shadow.size.memory_mib,
        target_vcpus=record.target.vcpus,
        target_memory_mib=record.target.memory_mib,
    )
    return PHYSICAL, scaled.need


@dataclass(frozen=True)
class Cases:
    x: Floats
    base: dict[str, Floats]
    observed: dict[str, Floats]
    groups: NDArray[np.str_]
    kinds: NDArray[np.str_]

    @classmethod
    def of(cls, records: Sequence[HistoryRecord]) -> Cases:
        rows, bases, kinds = [], [], []
        for r in records:
            kind, base = base_of(r)
            kinds.append(kind)
            bases.append(base)
            rows.append(
                correction_row(
                    r.shadow.features,
                    shadow_vcpus=r.shadow.size.vcpus,
                    shadow_memory_mib=r.shadow.size.memory_mib,
                    base=base,
                    kind=kind,
                    beyond_ramp=r.beyond_ramp,
                )
            )

        def col(values: Sequence[Requirement], res: str) -> Floats:
            return np.asarray([float(getattr(v, res)) for v in values], dtype=np.float64)

        return cls(
            x=np.asarray(rows, dtype=np.float64).reshape(len(rows), len(CORRECTION_FEATURES)),
            base={res: col(bases, res) for res in RESOURCES},
            observed={res: col([r.observed for r in records], res) for res in RESOURCES},
            groups=np.asarray([r.job for r in records], dtype=np.str_),
            kinds=np.asarray(kinds, dtype=np.str_),
        )


def log_ratio(res: str, observed: Floats, base: Floats) -> Floats:
    e = EPS[res]
    return np.asarray(np.log(observed + e) - np.log(base + e), dtype=np.float64)


def applied(res: str, base: Floats, log_r: Floats) -> Floats:
    """The extrapolation corrected by a log-ratio, never below 0."""
    e = EPS[res]
    return np.asarray(np.maximum((base + e) * np.exp(log_r) - e, 0.0), dtype=np.float64)


def short_scores(res: str, upper: Floats, observed: Floats) -> Floats:
    """Conformal scores (``conformal.scores``) of the allocation a P90 of
    ``upper`` gets: a launch that realized no more than the least allocation
    (``ALLOCATION_FLOOR``), or an IOPS P90 of 0 (no cap at all), is never
    short whatever the margin, so it scores 0. Without this, one idle VM's
    1 IOPS under a P90 rounded to 0 made every margin unreachable."""
    never = observed <= ALLOCATION_FLOOR[res]
    if res == "iops":
        never |= upper <= 0
    s = scores(upper, observed, np.full(upper.size, np.inf))
    return np.asarray(np.where(never, 0.0, s), dtype=np.float64)


def allocated(res: str, x: Floats, observed: Floats) -> Floats:
    """What a VM gets for a need of ``x``, at the floors ``round_allocation``
    keeps (not its rounding up); an IOPS need of 0 gets no cap, which leaves
    nothing short and nothing unused, so it counts as the realized figure."""
    floor = ALLOCATION_FLOOR[res]
    got = np.maximum(x, floor)
    if res == "iops":
        got = np.where(x > 0, got, observed)
    return np.asarray(got, dtype=np.float64)


def _fit(x: Floats, y: Floats, q: float) -> HistGradientBoostingRegressor:
    est = HistGradientBoostingRegressor(loss="quantile", quantile=q, **PARAMS)
    # One OpenMP thread: see models.QuantileModel.fit.
    with threadpool_limits(limits=1, user_api="openmp"):
        return est.fit(x, y)


def _predict(est: HistGradientBoostingRegressor, x: Floats) -> Floats:
    with threadpool_limits(limits=1, user_api="openmp"):
        return np.asarray(est.predict(x), dtype=np.float64)


def _two_sided(r: Floats, coverage: float) -> tuple[float, float]:
    """Split-conformal bounds of residuals ``r`` for a two-sided ``coverage``:
    the floor((n + 1) a/2)-th smallest and the ceil((n + 1)(1 - a/2))-th
    (``a = 1 - coverage``); infinite where n is too small for them."""
    n, tail = r.size, (1 - coverage) / 2
    ordered = np.sort(r)
    k_lo, k_hi = rank_down((n + 1) * tail), rank_up((n + 1) * (1 - tail))
    lo = float(ordered[k_lo - 1]) if k_lo >= 1 else -math.inf
    hi = float(ordered[k_hi - 1]) if k_hi <= n else math.inf
    return lo, hi


@dataclass
class Correction:
    """A trained correction: per resource its median and P90 models, its
    conformal margin on the P90 and its interval of the log-ratio around the
    median (``residuals``); ``estimators`` is None with too little history."""

    estimators: dict[str, dict[float, HistGradientBoostingRegressor]] | None
    margins: dict[str, float] = field(default_factory=dict)
    residuals: dict[str, tuple[float, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ramp_records(self) -> int:
        """Usable records of completed loaded launches behind it."""
        return int(self.meta.get("ramp_records", 0))

    @property
    def records(self) -> int:
        return int(self.meta.get("records", 0))

    def predict(self, x: Floats, base: Requirement) -> dict[str, dict[str, float]]:
        """Per resource ``median``, ``p90``, ``lo`` and ``hi`` for one row ``x``."""
        assert self.estimators is not None, "predict on an untrained correction"
        row = np.asarray(x, dtype=np.float64).reshape(1, -1)
        out: dict[str, dict[str, float]] = {}
        for res in RESOURCES:
            b = np.asarray([float(getattr(base, res))])
            med = _predict(self.estimators[res][0.5], row)
            up = np.maximum(_predict(self.estimators[res][UPPER], row), med)
            lo_r, hi_r = self.residuals[res]
            out[res] = {
                "median": float(applied(res, b, med)[0]),
                "p90": float(applied(res, b, up)[0]),
                "lo": float(applied(res, b, med + lo_r)[0]),
                "hi": float(applied(res, b, med + hi_r)[0]),
            }
        return out


def _fit_all(cases: Cases, idx: NDArray[np.intp]) -> dict[str, dict[float, Any]]:
    x = cases.x[idx]
    return {
        res: {
            q: _fit(x, log_ratio(res, cases.observed[res][idx], cases.base[res][idx]), q)
            for q in (0.5, UPPER)
        }
        for res in RESOURCES
    }


def train_correction(
    records: Sequence[HistoryRecord],
    *,
    target_under: float = DEFAULT_TARGET_UNDER,
    coverage: float = COVERAGE,
    ramp_margin: float = 1.2,
) -> Correction:
    """Fit on all ``records``; calibrate margins and intervals on held-out ramp
    records; keep in ``meta["held_out"]`` how the corrected recommendation and
    the ramp alone (its need x ``ramp_margin``) fared on them."""
    cases = Cases.of(records)
    ramp = np.flatnonzero(cases.kinds == RAMP)
    ramp_jobs = sorted(set(cases.groups[ramp].tolist()))
    meta: dict[str, Any] = {
        "records": len(records),
        "ramp_records": int(ramp.size),
        "imported_records": int(len(records) - ramp.size),
        "ramp_jobs": len(ramp_jobs),
        "target_under": target_under,
        "interval_coverage": coverage,
        "features": list(CORRECTION_FEATURES),
    }
    if ramp.size < CONFORMAL_MIN or len(ramp_jobs) < 2:
        meta["reason"] = (
            f"{ramp.size} records of completed loaded launches from {len(ramp_jobs)} jobs: "
            f"a conformal margin needs {CONFORMAL_MIN} from 2 jobs at least"
        )
        return Correction(None, meta=meta)
    # Out-of-fold on the ramp records (folds of their jobs); every other
    # record of another job is on the fitting side of each fold.
    k = min(CALIBRATION_FOLDS, len(ramp_jobs))
    oof = {res: {q: np.zeros(ramp.size) for q in (0.5, UPPER)} for res in RESOURCES}
    for _tr, te in GroupKFold(n_splits=k).split(ramp, groups=cases.groups[ramp]):
        held = set(cases.groups[ramp[te]].tolist())
        fit_idx = np.flatnonzero(~np.isin(cases.groups, list(held)))
        models = _fit_all(cases, fit_idx)
        for res, per_q in models.items():
            for q, est in per_q.items():
                oof[res][q][te] = _predict(est, cases.x[ramp[te]])
    margins, residuals, held_out = {}, {}, {}
    for res in RESOURCES:
        base, obs = cases.base[res][ramp], cases.observed[res][ramp]
        med = oof[res][0.5]
        up = applied(res, base, np.maximum(oof[res][UPPER], med))
        margin = conformal_quantile(short_scores(res, up, obs), target_under)
        margins[res] = margin
        residuals[res] = _two_sided(log_ratio(res, obs, base) - med, coverage)
        lo = applied(res, base, med + residuals[res][0])
        hi = applied(res, base, med + residuals[res][1])
        held_out[res] = {
            "corrected": under_and_waste(allocated(res, up * margin, obs), obs),
            "ramp_alone": under_and_waste(allocated(res, base * ramp_margin, obs), obs),
            "interval_covered": round(float(np.mean((obs >= lo) & (obs <= hi))), 4),
            "median_ratio": round(float(np.median((obs + EPS[res]) / (base + EPS[res]))), 4),
        }
    meta["held_out"] = {"records": int(ramp.size), "folds": k, "resources": held_out}
    meta["margins"] = {r: m if math.isfinite(m) else None for r, m in margins.items()}
    unreached = [r for r, m in margins.items() if not math.isfinite(m)]
    if unreached:
        # A held-out P90 of 0 under a real need: no margin covers it, so the
        # correction cannot promise its rate and the ramp answers instead.
        meta["reason"] = f"no conformal margin covers {', '.join(unreached)} on held-out launches"
        return Correction(None, meta=meta)
    everything = np.arange(len(records))
    return Correction(_fit_all(cases, everything), margins, residuals, meta)
