"""What run-to-run noise alone costs: a hindsight reference beside the evaluation.

Runs of one job, at one input, on one VM type do not need the same: on Lumos
the P95 IOPS of such runs on an 8-vCPU type differ by up to 43x (median 1.5x).
A prediction made before the run cannot know which of them it will be. So the
evaluation also scores, in hindsight, a "predictor" told each group's typical
requirement exactly (the geometric mean of the group's runs, the run being
scored included) with one margin for every case, the smallest meeting the
target under-provisioning rate. The waste it keeps is what the noise costs a
prediction that is exact about every group's typical value but sizes the
margin the same for all. It is not a bound for the quantile models, whose P90
moves with the case, but when it is above the goal, reaching the goal takes
knowing, for a job never seen, how much its runs will vary.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.margin import DEFAULT_TARGET_UNDER, calibrate_margin
from vmshadow.predict.metrics import under_and_waste
from vmshadow.predict.sar import Floats


def group_key(r: HistoryRecord) -> tuple[str, str, str]:
    """Runs of one job, at one input size, on one target size."""
    size = r.target.type or f"{r.target.vcpus} vCPU/{r.target.memory_mib} MiB"
    return (r.job, r.input or "", size)


def run_to_run(
    records: Sequence[HistoryRecord],
    req: Floats,
    capacity: Floats,
    eps: float,
    target_under: float = DEFAULT_TARGET_UNDER,
) -> dict[str, Any]:
    """The hindsight reference for one resource over ``records`` (``req`` and
    ``capacity`` one value per record).

    A target run paired with several shadow runs is one run here: the group's
    geometric mean and the spread (largest / smallest requirement, ``eps`` added
    to both so that a run without I/O has a ratio) are over distinct runs.
    """
    runs: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for i, r in enumerate(records):
        runs[group_key(r)][r.target_run or f"record {i}"] = float(req[i])
    typical = {k: _geometric_mean(list(v.values()), eps) for k, v in runs.items()}
    spreads = [
        (max(v.values()) + eps) / (min(v.values()) + eps) for v in runs.values() if len(v) > 1
    ]
    point = np.asarray([typical[group_key(r)] for r in records], dtype=np.float64)
    margin, reached = calibrate_margin(point, req, capacity, target_under)
    rec = np.minimum(point * margin, capacity)
    return {
        "groups": len(runs),
        "groups_with_repeats": len(spreads),
        "spread_median": round(float(np.median(spreads)), 2) if spreads else None,
        "spread_p90": round(float(np.percentile(spreads, 90)), 2) if spreads else None,
        "spread_max": round(float(np.max(spreads)), 2) if spreads else None,
        "margin": margin,
        "margin_reached": reached,
        **under_and_waste(rec, req),  # waste None when every case is under
    }


def _geometric_mean(values: list[float], eps: float) -> float:
    g = math.exp(float(np.mean(np.log(np.asarray(values) + eps)))) - eps
    # Kept within the runs' range, so that one run's typical need is itself
    # exactly and not a rounding error below it.
    return min(max(g, min(values)), max(values))
