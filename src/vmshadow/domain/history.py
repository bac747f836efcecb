"""History: a run on a small VM (the shadow) paired with what the same workload
needed on a larger one, the data the predictors train on.

``HistoryRecord`` is what a model learns from; ``StoredHistory`` is an entry
as the store keeps it (``Store.all_history``), whose record is None when it
lacks what a model learns from; ``LaunchRecord`` is what the controller
records when a launched VM's observation window ends. Imports build records
in ``predict.history``; the store turns them into rows and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Requirement


@dataclass(frozen=True)
class Size:
    vcpus: int
    memory_mib: int
    type: str | None = None
    family: str | None = None
    iops: float | None = None  # provisioned IOPS, when the catalogue says


@dataclass(frozen=True)
class ShadowRun:
    size: Size
    need: Requirement  # the shadow's own measured requirement
    features: dict[str, float]
    run: str | None = None  # where it came from, e.g. c5.large/hadoop_join_small_1
    interval_s: float = math.nan  # how often it was sampled (NaN: not recorded)


@dataclass(frozen=True)
class HistoryRecord:
    source: str
    job: str
    shadow: ShadowRun
    target: Size
    observed: Requirement  # requirement observed on the target
    observed_s: float
    input: str | None = None
    target_run: str | None = None
    # A launch with an expected load (``vmshadow`` rows): the load, and the
    # ramp's uncorrected extrapolation the learned correction learns from.
    load: float | None = None
    extrapolated: Requirement | None = None
    beyond_ramp: float = math.nan  # the load over the ramp's top step


@dataclass(frozen=True)
class LaunchRecord:
    """What one launch observed, as the controller records it (source
    "vmshadow"). The shadow's summary stays a document: without shadow samples
    it holds the size alone, and it keeps what the prediction said (need,
    method, engine, extrapolation) beside what a model learns from."""

    transition_id: str
    job: str
    profile: str
    load: float | None
    shadow: dict[str, Any]
    target: Allocation | None  # the VM's final allocation
    observed: Requirement
    observed_s: float


@dataclass(frozen=True)
class StoredHistory:
    """A history entry as the store read it. The documents mirror the store's
    columns by name; ``record`` is the entry as a model learns from it."""

    id: int
    transition_id: str | None  # the launch it came from; None when imported
    created_at: datetime  # timezone-aware UTC
    source: str
    job: str
    profile: str | None
    load: float | None
    shadow: dict[str, Any]
    target: dict[str, Any]
    observed: dict[str, Any]
    observed_s: float
    record: HistoryRecord | None


def json_float(v: float) -> float | None:
    """A float as a history document keeps it: NaN (not measured) as null."""
    return None if math.isnan(v) else round(v, 6)
