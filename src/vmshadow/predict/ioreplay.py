"""The IOPS recommendations judged as a cap: each case's bucket
(:func:`vmshadow.predict.tokenbucket.recommend_bucket`, from the method's rate
and the shadow's I/O series) replayed against the full VM's observed I/O series
(:func:`vmshadow.predict.tokenbucket.replay`).

A history record names the runs it pairs (``shadow.run``, ``target_run``: the
run folder under the data set, ``<vm_type>/<run>``) and its source names the
data set's folder (``lumos:/path@digest``, :func:`vmshadow.predict.history.source_id`).
The series are read again from there; a record whose folder cannot be found
(history named with ``--source``, a folder since moved, sysstat files) is left
out of the replay and counted.

The full VM's series is replayed as recorded (1 s in Lumos) in every protocol,
also when the history was resampled to 5 s: a disk throttles the I/O as it
comes, not its 5 s averages. The shadow's series, which the recommendation may
use, is the one the history holds (resampled with it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vmshadow.predict import tokenbucket as tb
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.metrics import rounded
from vmshadow.predict.resample import resample
from vmshadow.predict.sar import Floats, SarError, UsageSeries, read_sar
from vmshadow.predict.tokenbucket import recommend_bucket, replay

WAITED_OVER = 0.01  # a case fails when more than 1 % of its I/Os wait
GOAL_CASES_OVER = 0.05  # at most 5 % of cases may
SAR_FILE = "sar.csv"
RESAMPLED_KIND = "lumos-resampled-"


@functools.lru_cache(maxsize=8192)
def _read(path: str, step_s: float | None) -> UsageSeries | None:
    try:
        series = read_sar(Path(path), 1)  # vCPUs only bound busy vCPUs, unused here
    except SarError:
        return None
    return resample(series, step_s) if step_s is not None else series


def source_folder(source: str) -> tuple[Path, float | None] | None:
    """The folder a Lumos import read and the step it was resampled to (None: as
    recorded), from the source's derived name; None for any other name."""
    kind, sep, rest = source.partition(":")
    if not sep or not kind.startswith("lumos") or "@" not in rest:
        return None
    path = Path(rest.rpartition("@")[0])
    step: float | None = None
    if kind.startswith(RESAMPLED_KIND):
        try:
            step = float(kind[len(RESAMPLED_KIND) :].rstrip("s"))
        except ValueError:
            return None
    return (path, step) if path.is_dir() else None


def run_series(record: HistoryRecord, which: str) -> tuple[Floats, Floats] | None:
    """``(t, iops)`` of the record's shadow run (``which="shadow"``, as the history
    holds it) or full-VM run (``"target"``, as recorded)."""
    where = source_folder(record.source)
    run = record.shadow.run if which == "shadow" else record.target_run
    if where is None or not run:
        return None
    root, step = where
    series = _read(str(root / run / SAR_FILE), step if which == "shadow" else None)
    return None if series is None else (series.t, series.iops)


def replay_methods(
    records: Sequence[HistoryRecord],
    rates: dict[str, Floats],
    reference: str = "linear",
    goal_over: float = GOAL_CASES_OVER,
) -> dict[str, Any] | None:
    """Per method, each case's rate (``rates``, aligned with ``records``) made a
    bucket and replayed: the share of cases with more than 1 % of I/Os waiting
    and the mean unused share of the rate. ``target_met`` per model method: at
    most ``goal_over`` of cases over, unused share at most half the
    ``reference`` baseline's. None when no record's series can be read."""
    pairs = [(run_series(r, "shadow"), run_series(r, "target")) for r in records]
    known = np.asarray([full is not None for _, full in pairs], dtype=np.bool_)
    if not known.any():
        return None
    methods: dict[str, Any] = {}
    for name, rate in rates.items():
        if rate.size != len(records):
            continue
        waited, unused, burst, length = [], [], [], []
        for i in np.flatnonzero(known):
            shadow, full = pairs[i]
            samples = None if shadow is None else list(zip(*shadow, strict=True))
            bucket = recommend_bucket(float(rate[i]), 1.0, samples)
            assert full is not None
            out = replay(full[0], full[1], bucket)
            waited.append(out.waited)
            unused.append(out.unused)
            burst.append((bucket.burst or bucket.rate) / bucket.rate)
            length.append(bucket.burst_s)
        w = np.asarray(waited)
        methods[name] = {
            "cases_over_1pct": rounded(float(np.mean(w > WAITED_OVER))),
            "unused": rounded(float(np.mean(unused))),
            "waited_mean": rounded(float(np.mean(w))),
            "waited_p95": rounded(float(np.percentile(w, 95))),
            "burst_ratio_median": rounded(float(np.median(burst)), 2),
            "burst_s_median": rounded(float(np.median(length)), 1),
        }
    ref = methods.get(reference)
    verdict = {
        name: bool(
            ref is not None
            and m["cases_over_1pct"] <= goal_over
            and m["unused"] <= ref["unused"] / 2
        )
        for name, m in methods.items()
        if name.startswith("model")
    }
    return {
        "cases": int(known.sum()),
        "cases_without_series": int((~known).sum()),
        "full_vm_series": "as recorded (not resampled)",
        "rule": (
            f"rate: the method's recommendation (rounded up to {tb.IOPS_STEP}); burst: rate "
            f"x the shadow's peak/P95 ({tb.MIN_PEAK_RATIO:g}-{tb.MAX_PEAK_RATIO:g}x, "
            f"{tb.MIN_PEAK_RATIO:g}x without a series); length: the scaled shadow's "
            f"largest backlog over the rate at the burst rate, "
            f"{tb.MIN_BURST_S}-{tb.MAX_BURST_S} s"
        ),
        "goal": {
            "cases_over_1pct_max": goal_over,
            "waited_over": WAITED_OVER,
            "unused_max": None if ref is None else rounded(ref["unused"] / 2),
            "reference": reference,
        },
        "methods": methods,
        "target_met": verdict,
    }
