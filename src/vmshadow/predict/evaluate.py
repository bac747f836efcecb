"""Quantile models of a full VM's needs from its shadow, and their honest evaluation.

Per resource, a gradient-boosted quantile regressor (scikit-learn's
HistGradientBoostingRegressor, median and P90) learns log(target / shadow)
usage from features of the shadow run and the two sizes: usage does not scale
linearly with size, and CPU measured on a small VM is capped by its vCPUs (the
share of saturated seconds tells the model how capped). The recommendation is
the P90 times a margin: fixed (x1.2) or calibrated, the smallest margin whose
under-provisioning on held-out folds of the training data meets the target.

Evaluation: GroupKFold by job (the same job never in train and test, at any
input size); per resource the under-provisioning rate, waste, median absolute
percentage error (of the median) and pinball loss (of the P90), beside the
three baselines of DESIGN.md on the same folds. All recommendations are
compared before rounding, so rounding steps do not blur the comparison.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold

from vmshadow.predict.history import Pair

RESOURCES = ("vcpus", "memory_mib", "iops")
EPS = {"vcpus": 0.05, "memory_mib": 16.0, "iops": 1.0}
MARGIN_GRID = np.round(np.arange(1.0, 4.001, 0.01), 2)


def shadow_value(p: Pair, res: str) -> float:
    runs = p.shadow_runs
    if res == "vcpus":
        return float(np.mean([u.p95_vcpus for u in runs]))
    if res == "memory_mib":
        return float(np.mean([u.peak_mem_mib for u in runs]))
    return float(np.mean([u.p95_iops for u in runs]))


def observed_value(p: Pair, res: str) -> float:
    u = p.observed
    return {"vcpus": u.p95_vcpus, "memory_mib": u.peak_mem_mib, "iops": u.p95_iops}[res]


def features(p: Pair) -> list[float]:
    runs = p.shadow_runs
    s, t = p.shadow, p.target

    def m(attr: str) -> float:
        return float(np.mean([getattr(u, attr) for u in runs]))

    return [
        m("p95_vcpus") / s.vcpus,
        m("mean_vcpus") / s.vcpus,
        m("saturated_share"),
        math.log1p(m("peak_mem_mib")),
        m("peak_mem_mib") / s.memory_mib,
        math.log1p(m("mean_mem_mib")),
        math.log1p(m("p95_iops")),
        math.log1p(m("mean_iops")),
        math.log1p(m("seconds")),
        float(s.vcpus),
        float(s.memory_mib),
        float(t.vcpus),
        float(t.memory_mib),
        t.vcpus / s.vcpus,
        t.memory_mib / s.memory_mib,
    ]


@dataclass
class QuantileModel:
    """Median and P90 of log(target/shadow) for one resource."""

    resource: str
    models: dict[float, HistGradientBoostingRegressor] = field(default_factory=dict)

    def fit(self, x: np.ndarray, pairs: list[Pair]) -> QuantileModel:
        y = self._target(pairs)
        for q in (0.5, 0.9):
            m = HistGradientBoostingRegressor(
                loss="quantile",
                quantile=q,
                max_iter=200,
                learning_rate=0.05,
                max_leaf_nodes=15,
                min_samples_leaf=10,
                l2_regularization=1.0,
                random_state=0,
            )
            self.models[q] = m.fit(x, y)
        return self

    def _target(self, pairs: list[Pair]) -> np.ndarray:
        e = EPS[self.resource]
        return np.array(
            [
                math.log(observed_value(p, self.resource) + e)
                - math.log(shadow_value(p, self.resource) + e)
                for p in pairs
            ]
        )

    def predict(self, x: np.ndarray, pairs: list[Pair], q: float) -> np.ndarray:
        e = EPS[self.resource]
        base = np.array([math.log(shadow_value(p, self.resource) + e) for p in pairs])
        out = np.exp(base + self.models[q].predict(x)) - e
        return np.asarray(np.maximum(out, 0.0))


def _under_waste(rec: np.ndarray, req: np.ndarray) -> tuple[float, float]:
    under = req > rec
    ok = ~under & (rec > 0)
    waste = float(np.mean((rec[ok] - req[ok]) / rec[ok])) if ok.any() else float("nan")
    return float(np.mean(under)), waste


def _pinball(pred: np.ndarray, req: np.ndarray, q: float) -> float:
    d = req - pred
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def calibrate_margin(p90: np.ndarray, req: np.ndarray, target_under: float) -> float:
    for m in MARGIN_GRID:
        if np.mean(req > p90 * m) <= target_under:
            return float(m)
    return float(MARGIN_GRID[-1])


def _oof_p90(x: np.ndarray, pairs: list[Pair], groups: np.ndarray, res: str) -> np.ndarray:
    out = np.zeros(len(pairs))
    k = min(4, len(set(groups)))
    for tr, te in GroupKFold(n_splits=k).split(x, groups=groups):
        m = QuantileModel(res).fit(x[tr], [pairs[i] for i in tr])
        out[te] = m.predict(x[te], [pairs[i] for i in te], 0.9)
    return out


def evaluate(
    pairs: list[Pair],
    *,
    margin_mode: str = "fixed",
    margin: float = 1.2,
    target_under: float = 0.05,
    folds: int = 5,
    largest_only: bool = True,
) -> dict[str, Any]:
    """Grouped cross-validation of the model and the baselines; a report dict."""
    started = time.monotonic()
    x = np.array([features(p) for p in pairs])
    groups = np.array([p.job for p in pairs])
    largest: dict[str, int] = {}
    for p in pairs:
        largest[p.family] = max(largest.get(p.family, 0), p.target.vcpus)
    test_mask = np.array([(not largest_only) or p.target.vcpus == largest[p.family] for p in pairs])
    k = min(folds, len(set(groups)))
    rows: dict[str, dict[str, list[float]]] = {r: {} for r in RESOURCES}
    margins: dict[str, list[float]] = {r: [] for r in RESOURCES}
    collected: dict[str, dict[str, list[np.ndarray]]] = {
        r: {n: [] for n in ("req", "model", "median", "p90", "b_shadow", "b_linear", "b_full")}
        for r in RESOURCES
    }
    for tr, te in GroupKFold(n_splits=k).split(x, groups=groups):
        te = te[test_mask[te]]
        if len(te) == 0:
            continue
        tr_pairs = [pairs[i] for i in tr]
        te_pairs = [pairs[i] for i in te]
        for res in RESOURCES:
            model = QuantileModel(res).fit(x[tr], tr_pairs)
            p50 = model.predict(x[te], te_pairs, 0.5)
            p90 = model.predict(x[te], te_pairs, 0.9)
            m = margin
            if margin_mode == "calibrated":
                oof = _oof_p90(x[tr], tr_pairs, groups[tr], res)
                tr_req = np.array([observed_value(p, res) for p in tr_pairs])
                m = calibrate_margin(oof, tr_req, target_under)
            margins[res].append(m)
            shadow = np.array([shadow_value(p, res) for p in te_pairs])
            ratio = np.array([p.target.vcpus / p.shadow.vcpus for p in te_pairs])
            c = collected[res]
            c["req"].append(np.array([observed_value(p, res) for p in te_pairs]))
            rec = p90 * m
            if res == "vcpus":
                # Busy vCPUs can never exceed the VM's vCPUs: a larger
                # recommendation is waste by construction.
                rec = np.minimum(rec, [float(p.target.vcpus) for p in te_pairs])
            c["model"].append(rec)
            c["median"].append(p50)
            c["p90"].append(p90)
            c["b_shadow"].append(shadow * 1.2)
            c["b_linear"].append(shadow * ratio * 1.2)
            if res == "vcpus":
                c["b_full"].append(np.array([float(p.target.vcpus) for p in te_pairs]))
            elif res == "memory_mib":
                c["b_full"].append(np.array([float(p.target.memory_mib) for p in te_pairs]))
    for res in RESOURCES:
        cat: dict[str, Any] = {
            n: np.concatenate(v) if v else np.array([]) for n, v in collected[res].items()
        }
        req = cat["req"]
        out: dict[str, Any] = {}
        for name in ("model", "b_shadow", "b_linear", "b_full"):
            if len(cat[name]) != len(req) or not len(req):
                out[name] = None  # "as provisioned" has no IOPS figure in this data
                continue
            under, waste = _under_waste(cat[name], req)
            out[name] = {"under": round(under, 4), "waste": round(waste, 4)}
        nz = req > 0
        out["model"]["mdape"] = round(
            float(np.median(np.abs(cat["median"][nz] - req[nz]) / req[nz])), 4
        )
        out["model"]["pinball_p90"] = round(_pinball(cat["p90"], req, 0.9), 4)
        out["model"]["margin"] = round(float(np.mean(margins[res])), 3)
        ok = [
            out[b]["waste"]
            for b in ("b_shadow", "b_linear", "b_full")
            if out[b] is not None and out[b]["under"] <= target_under
        ]
        cheapest = min(ok) if ok else None
        out["cheapest_ok_baseline_waste"] = cheapest
        out["target_met"] = bool(
            out["model"]["under"] <= target_under
            and cheapest is not None
            and out["model"]["waste"] <= cheapest / 2
        )
        out["cases"] = int(len(req))
        rows[res] = out
    return {
        "pairs": len(pairs),
        "tested": int(sum(len(v) for v in collected["vcpus"]["req"])),
        "jobs": len(set(groups)),
        "folds": k,
        "margin_mode": margin_mode,
        "target_under": target_under,
        "resources": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
