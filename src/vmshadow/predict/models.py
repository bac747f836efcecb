"""Per-resource quantile models of a full VM's requirement, learnt from history.

For each resource (vCPUs, memory, IOPS) two gradient-boosted quantile
regressors (scikit-learn's ``HistGradientBoostingRegressor``, loss
``quantile``) predict the median and the P90 of ``log((target + e) / (shadow + e))``:
the ratio of what the full VM used to what the shadow used, in log space
because usage does not scale linearly with size (on Lumos, 2 -> 8 vCPUs gives
a median 2.7x busy cores, 1.34x memory, 1.1x IOPS). For IOPS the ratio is to
the shadow's *mean* IOPS, not its P95: the P95 of bursty I/O swings up to 19x
between runs of one job on one shadow type, and dividing by it added that
noise to what the model had to learn (Lumos, held out, calibrated margin:
10.0 % under / 55.7 % waste against its P95, 4.6 % / 53.0 % against its
mean). Features are those of
:mod:`vmshadow.predict.features`: the shadow run's distribution shapes and both
sizes, so the model knows how capped the shadow's CPU was.

Every quantile is capped at the target's capacity (a VM cannot use more vCPUs
or memory than it has, so neither can its predicted need); with too little
history (fewer than ``MIN_HISTORY`` records) the physical extrapolation of
:mod:`vmshadow.predict.physical` is used instead, and says so. A trained set
keeps its held-out track record (under-provisioning and waste per resource on
jobs its fold models never saw), which every prediction it makes shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from vmshadow.domain.prediction import RESOURCES
from vmshadow.predict.conformal import ConformalMargin
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.features import FEATURES
from vmshadow.predict.margin import DEFAULT_MARGIN, DEFAULT_TARGET_UNDER, MARGIN_GRID, MarginMode
from vmshadow.predict.metrics import under_and_waste
from vmshadow.predict.sar import Floats

QUANTILES = (0.5, 0.9)
UPPER = 0.9  # the quantile the margin multiplies
MIN_HISTORY = 30  # records; below it the physical extrapolation is used
# Whether the calibration splits also hold out the target's family (see
# calibration_splits): set from the out-of-distribution protocols, docs/prediction.md.
HOLD_OUT_FAMILY = True
# Whether margins are per stratum (Mondrian) or pooled. Per stratum over-covered
# on every protocol of docs/prediction.md (the fold models' error at 4x the
# shadow overstates the final model's), costing 3-5 points of vCPU waste.
MONDRIAN = False
# Added before the log so that a resource the shadow did not use (0 IOPS) has a ratio.
EPS = {"vcpus": 0.05, "memory_mib": 16.0, "iops": 1.0}
# Shallow, regularised trees: 31 jobs in Lumos are few, and deep trees learn the
# jobs rather than how usage scales.
PARAMS: dict[str, Any] = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "random_state": 0,
}


_IOPS_MEAN = FEATURES.index("iops_mean_log")


def reference(resource: str, x: Floats, shadow: Floats) -> Floats:
    """What the model's ratio is taken against: the shadow's requirement, or for
    IOPS its mean IOPS (``iops_mean_log`` of the features) where it was measured."""
    if resource != "iops":
        return shadow
    mean = np.expm1(np.asarray(x, dtype=np.float64)[:, _IOPS_MEAN])
    return np.where(np.isfinite(mean), mean, shadow)


@dataclass
class QuantileModel:
    """Median and P90 of one resource's target/shadow ratio (log space)."""

    resource: str
    estimators: dict[float, HistGradientBoostingRegressor] = field(default_factory=dict)

    def fit(
        self, x: Floats, shadow: Floats, observed: Floats, quantiles: tuple[float, ...] = QUANTILES
    ) -> QuantileModel:
        e = EPS[self.resource]
        y = np.log(observed + e) - np.log(reference(self.resource, x, shadow) + e)
        for q in quantiles:
            est = HistGradientBoostingRegressor(loss="quantile", quantile=q, **PARAMS)
            # One OpenMP thread (here and in predict): these models are small, and
            # threads spinning on a host busy with shadows made them ~10x slower.
            with threadpool_limits(limits=1, user_api="openmp"):
                self.estimators[q] = est.fit(x, y)
        return self

    def predict(
        self, x: Floats, shadow: Floats, q: float, capacity: Floats | float = np.inf
    ) -> Floats:
        """The quantile ``q`` of the requirement, at most ``capacity`` (the target's).

        The cap is physics, not tuning: P95 busy vCPUs cannot exceed the VM's
        vCPUs, nor peak memory its memory, so a quantile above it (the log-ratio
        extrapolated too far) is an artefact. It makes the reported need honest;
        the recommendation was cut there anyway.
        """
        e = EPS[self.resource]
        with threadpool_limits(limits=1, user_api="openmp"):
            raw = self.estimators[q].predict(x)
        ratio = np.exp(np.asarray(raw, dtype=np.float64))
        base = reference(self.resource, x, shadow)
        need = np.clip((base + e) * ratio - e, 0.0, capacity)
        return np.asarray(need, dtype=np.float64)


def fit_resources(
    data: Dataset, quantiles: tuple[float, ...] = QUANTILES
) -> dict[str, QuantileModel]:
    return {
        res: QuantileModel(res).fit(data.x, data.shadow[res], data.observed[res], quantiles)
        for res in RESOURCES
    }


# Job folds for the held-out P90s the conformal margins are calibrated on. Each
# fold's model should resemble the one that is used (trained on all the jobs):
# one trained on fewer is worse, and the margin it calls for overshoots.
CALIBRATION_FOLDS = 8


def calibration_splits(
    data: Dataset, folds: int = CALIBRATION_FOLDS, by_family: bool = HOLD_OUT_FAMILY
) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """(fit, calibrate) index pairs covering every record once on the calibrate
    side: folds grouped by job, so a job is never on both sides; with
    ``by_family`` and history of several target families, the calibrate side of
    each split is one family and the fit side holds none of it, so the scores
    carry the error of a family the model has not seen."""
    k = min(folds, data.jobs)
    if k < 2:
        raise ValueError("calibration needs history of at least two jobs")
    job_folds = list(GroupKFold(n_splits=k).split(data.x, groups=data.groups))
    families = np.asarray([r.target.family or "" for r in data.records], dtype=np.str_)
    kinds = sorted(set(families.tolist()))
    if not by_family or len(kinds) < 2:
        return [(tr, te) for tr, te in job_folds]
    out = []
    for fam in kinds:
        for tr, te in job_folds:
            fit, cal = tr[families[tr] != fam], te[families[te] == fam]
            if fit.size and cal.size:
                out.append((fit, cal))
    return out


def out_of_fold_upper(
    data: Dataset, folds: int = CALIBRATION_FOLDS, by_family: bool = HOLD_OUT_FAMILY
) -> dict[str, Floats]:
    """P90s for every record from models that never saw its job (and, with
    ``by_family``, its target's family): see :func:`calibration_splits`."""
    out = {res: np.zeros(len(data)) for res in RESOURCES}
    for tr, te in calibration_splits(data, folds, by_family):
        part, held = data.take(tr), data.take(te)
        models = fit_resources(part, (UPPER,))
        for res, m in models.items():
            out[res][te] = m.predict(held.x, held.shadow[res], UPPER, held.capacity[res])
    return out


def conformal_margins(
    data: Dataset, target_under: float = DEFAULT_TARGET_UNDER, oof: dict[str, Floats] | None = None
) -> dict[str, ConformalMargin]:
    """Per resource the conformal margin (:mod:`vmshadow.predict.conformal`) on
    held-out P90s (``oof``, when already made)."""
    oof = oof if oof is not None else out_of_fold_upper(data)
    return {
        res: ConformalMargin.fit(
            oof[res],
            data.observed[res],
            data.capacity[res],
            data.x,
            data.groups,
            target_under,
            mondrian=MONDRIAN,
        )
        for res in RESOURCES
    }


def pooled_margin(c: ConformalMargin) -> float:
    """The pooled margin as one number for reports, the largest the grid allows
    when none reaches the rate."""
    return round(c.pooled, 3) if c.reached else float(MARGIN_GRID[-1])


def held_out(
    data: Dataset, oof: dict[str, Floats], margins: dict[str, Floats]
) -> dict[str, dict[str, float | None]]:
    """Per resource how the recommendation (P90 x margin, cut at the target's
    capacity) fared on history records whose job its model never saw: the share
    it left short, and the mean share of it unused where it sufficed."""
    out: dict[str, dict[str, float | None]] = {}
    for res in RESOURCES:
        rec = np.minimum(oof[res] * margins[res], data.capacity[res])
        out[res] = under_and_waste(rec, data.observed[res])
    return out


@dataclass
class ModelSet:
    """What ``vmshadow model train`` saves: models (or None), margins, metadata.

    ``margins`` holds one margin per resource (the fixed one, or the pooled
    conformal one); ``conformal``, when calibrated, the per-stratum margins that
    :meth:`margins_for` applies case by case."""

    models: dict[str, QuantileModel] | None
    margins: dict[str, float]
    meta: dict[str, Any]
    conformal: dict[str, ConformalMargin] | None = None

    @property
    def method(self) -> str:
        return "quantile-model" if self.models else "physical-extrapolation"

    @property
    def history_size(self) -> int:
        return int(self.meta.get("history_size", 0))

    def margins_for(self, x: Floats) -> dict[str, Floats]:
        """Each row's margin per resource: its stratum's conformal margin (the
        pooled one where its stratum had too few calibration cases), or the
        single margin when the set has no conformal margins."""
        n = np.asarray(x).shape[0]
        out: dict[str, Floats] = {}
        for res in RESOURCES:
            c = (self.conformal or {}).get(res)
            if c is not None and c.reached:
                out[res] = c.margins(x)
            else:
                out[res] = np.full(n, self.margins.get(res, DEFAULT_MARGIN), dtype=np.float64)
        return out


def train(
    data: Dataset,
    *,
    margin_mode: MarginMode = "fixed",
    margin: float = DEFAULT_MARGIN,
    target_under: float = DEFAULT_TARGET_UNDER,
    min_history: int = MIN_HISTORY,
) -> ModelSet:
    """Fit on all of ``data``; calibrate conformal margins on grouped held-out
    splits of it, and record how the recommendation fared there
    (``meta["held_out"]``)."""
    meta: dict[str, Any] = {
        "history_size": len(data),
        "jobs": data.jobs,
        "sources": sorted({r.source for r in data.records}),
        "margin_mode": margin_mode,
        "target_under": target_under,
        "quantiles": list(QUANTILES),
    }
    margins = dict.fromkeys(RESOURCES, margin)
    if len(data) < min_history or data.jobs < 2:
        meta["margin_mode"] = "fixed"
        meta["reason"] = (
            f"{len(data)} history records from {data.jobs} jobs: fewer than {min_history} "
            "records (or one job), so predictions use the physical extrapolation"
        )
        return ModelSet(None, margins, meta)
    # The held-out P90s serve the calibration and the track record saved with
    # the model, which predictions show: how often each resource came up short
    # on jobs the model had not seen (IOPS far more often wasteful than memory).
    oof = out_of_fold_upper(data)
    conformal = None
    per_case = {res: np.full(len(data), margin) for res in RESOURCES}
    if margin_mode == "calibrated":
        conformal = conformal_margins(data, target_under, oof)
        margins = {res: pooled_margin(c) for res, c in conformal.items()}
        meta["margin_reached"] = {res: c.reached for res, c in conformal.items()}
        per_case = ModelSet(None, margins, meta, conformal).margins_for(data.x)
    meta["held_out"] = {
        "records": len(data),
        "folds": min(CALIBRATION_FOLDS, data.jobs),  # job folds
        "splits": len(calibration_splits(data)),  # x families held out
        "margin_chosen_on_them": margin_mode == "calibrated",
        "resources": held_out(data, oof, per_case),
    }
    return ModelSet(fit_resources(data), margins, meta, conformal)
