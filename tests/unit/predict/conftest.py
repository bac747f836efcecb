"""Synthetic history for the predictor's unit tests (fast, deterministic)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from vmshadow.domain.prediction import Requirement
from vmshadow.predict.features import SHADOW_FEATURES
from vmshadow.predict.history import HistoryRecord, ShadowRun, Size


def make_records(jobs: int = 8, per_job: int = 6, seed: int = 0) -> list[HistoryRecord]:
    """Jobs whose full VM (8 vCPU) uses about ``k`` times the 2-vCPU shadow's CPU,
    ``k`` depending on how saturated the shadow was: a learnable rule with noise."""
    rng = random.Random(seed)
    shadow = Size(2, 4096, "s.large", "s")
    out = []
    for j in range(jobs):
        sat = 0.3 + 0.6 * j / max(jobs - 1, 1)
        for i in range(per_job):
            target = Size(8, 16384, "s.2xlarge", "s") if i % 2 else Size(4, 8192, "s.xl", "s")
            cpu = min(2.0, 1.2 + sat)
            mem = 1000 + 300 * j
            iops = 50 + 10 * j
            feats = dict.fromkeys(SHADOW_FEATURES, 0.5) | {
                "cpu_saturated": sat,
                "cpu_p95": cpu / 2,
                "mem_peak_log": math.log1p(mem),
            }
            ratio = target.vcpus / 2
            observed = Requirement(
                vcpus=min(target.vcpus, cpu * (1 + (ratio - 1) * sat) * rng.uniform(0.95, 1.05)),
                memory_mib=mem * 1.3 * rng.uniform(0.97, 1.03),
                iops=iops * rng.uniform(0.8, 1.25),
            )
            out.append(
                HistoryRecord(
                    source="test",
                    job=f"fw_job{j}",
                    shadow=ShadowRun(shadow, Requirement(cpu, mem, iops), feats, f"s.large/{j}"),
                    target=target,
                    observed=observed,
                    observed_s=60.0,
                    input=f"in{i // 2}",
                    target_run=f"{target.type}/{j}_{i}",
                )
            )
    return out


@pytest.fixture
def records() -> list[HistoryRecord]:
    return make_records()


@pytest.fixture
def history_of() -> Callable[..., list[HistoryRecord]]:
    """``history_of(jobs=, per_job=, seed=)``: synthetic records of that size."""
    return make_records
