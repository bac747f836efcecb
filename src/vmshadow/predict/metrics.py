"""How good a recommendation is, per resource (DESIGN.md "Prediction").

- under-provisioning rate: share of cases whose real requirement exceeds the
  recommendation;
- waste: mean of (recommendation - requirement) / recommendation over the
  cases that were not under-provisioned;
- MdAPE: median absolute percentage error of a point prediction;
- pinball loss at a quantile: how well a prediction works as that quantile
  (lower is better; in the resource's own unit).

Requirements of 0 (a run that did no I/O) are left out of MdAPE only: a
percentage of nothing is undefined, while "needed 0, got 10" is still waste.
"""

from __future__ import annotations

import math

import numpy as np

from vmshadow.predict.sar import Floats


def under_rate(rec: Floats, req: Floats) -> float:
    return float(np.mean(req > rec)) if req.size else math.nan


def waste(rec: Floats, req: Floats) -> float:
    ok = (req <= rec) & (rec > 0)
    return float(np.mean((rec[ok] - req[ok]) / rec[ok])) if ok.any() else math.nan


def mdape(pred: Floats, req: Floats) -> float:
    nz = req > 0
    return float(np.median(np.abs(pred[nz] - req[nz]) / req[nz])) if nz.any() else math.nan


def pinball(pred: Floats, req: Floats, q: float) -> float:
    d = req - pred
    return float(np.mean(np.maximum(q * d, (q - 1) * d))) if req.size else math.nan


def rounded(v: float, nd: int = 4) -> float | None:
    """A figure for a report: rounded, None where undefined (NaN, not JSON)."""
    return None if math.isnan(v) else round(v, nd)


def under_and_waste(rec: Floats, req: Floats) -> dict[str, float | None]:
    """The two figures every recommendation is judged by, rounded for a report."""
    return {"under": rounded(under_rate(rec, req)), "waste": rounded(waste(rec, req))}
