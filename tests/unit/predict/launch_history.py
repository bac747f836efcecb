"""Synthetic history of completed loaded launches for the correction's tests:
the ramp's extrapolation over-states what the VM then used, by a factor that
depends on the shadow's features (as the closed loop measured: realized /
predicted median 0.91 for vCPU, 0.71 for IOPS)."""

from __future__ import annotations

import math
import random

from vmshadow.domain.prediction import Requirement
from vmshadow.predict.features import SHADOW_FEATURES
from vmshadow.predict.history import HistoryRecord, ShadowRun, Size

TRUE_RATIO = {"vcpus": 0.9, "memory_mib": 1.0, "iops": 0.7}


def launch_records(jobs: int = 12, per_job: int = 4, seed: int = 0) -> list[HistoryRecord]:
    rng = random.Random(seed)
    shadow = Size(1, 512)
    out = []
    for j in range(jobs):
        for i in range(per_job):
            load = 100.0 * (1 + i)
            base = Requirement(0.004 * load * (1 + j / 10), 200 + load, 0.5 * load)
            feats = dict.fromkeys(SHADOW_FEATURES, 0.5) | {"cpu_mean": 0.2 + j / 40}
            observed = Requirement(
                *(
                    float(getattr(base, r)) * TRUE_RATIO[r] * math.exp(rng.gauss(0, 0.08))
                    for r in ("vcpus", "memory_mib", "iops")
                )
            )
            out.append(
                HistoryRecord(
                    source="vmshadow",
                    job=f"profile{j}@{load:g}",
                    shadow=ShadowRun(shadow, Requirement(0.3, 250, 20), feats),
                    target=Size(4, 4096),
                    observed=observed,
                    observed_s=600.0,
                    load=load,
                    extrapolated=base,
                    beyond_ramp=load / 100,
                )
            )
    return out
