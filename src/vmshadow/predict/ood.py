"""Out-of-distribution protocols: how the model and its margins fare on data
unlike their history, with what lumos-aws alone can show.

The models will be judged on other clouds and other sampling intervals, which
the project does not have. Two shifts can be made from lumos-aws itself:

- **leave one family out**: train (models and margins) on every family but
  one, score the held-out family; a family is a catalogue attribute (its
  memory per vCPU, its processor), so a new cloud's types are the nearest
  thing to it;
- **5 s sampling**: the same runs resampled to one sample per 5 s
  (:mod:`vmshadow.predict.resample`), scored by a model trained on the 1 s
  history (``1s->5s``) and by one trained at 5 s (``5s->5s``, grouped folds).

Each protocol reports, per resource, the model with its conformal margin beside
the baselines computed on the same cases, in the shape of
:func:`vmshadow.predict.evaluate.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.evaluate import Pairs, _Collected, _fold, _report, evaluate
from vmshadow.predict.history import (
    HistoryRecord,
    ImportResult,
    import_sar_history,
)
from vmshadow.predict.margin import DEFAULT_MARGIN, DEFAULT_TARGET_UNDER, MarginMode
from vmshadow.predict.vmtypes import Catalog

Protocol = Literal["grouped", "lofo", "resample5"]
PROTOCOLS: tuple[Protocol, ...] = ("grouped", "lofo", "resample5")
RESAMPLE_S = 5.0


def import_resampled(root: Path, catalog: Catalog, step_s: float = RESAMPLE_S) -> ImportResult:
    """The Lumos layout under ``root`` as if every run (shadow and full VM) had been
    sampled every ``step_s`` seconds: the same pairs as
    :func:`vmshadow.predict.history.import_sar_history`, from resampled series."""
    return import_sar_history(root, catalog, step_s=step_s)


def _aligned(a: Dataset, b: Dataset) -> bool:
    """Whether ``b`` holds the same pairs as ``a``, in the same order."""

    def key(r: HistoryRecord) -> tuple[str, str | None, str | None]:
        return (r.job, r.shadow.run, r.target_run)

    return len(a) == len(b) and all(
        key(x) == key(y) for x, y in zip(a.records, b.records, strict=True)
    )


def evaluate_lofo(
    data: Dataset,
    *,
    pairs: Pairs = "largest",
    margin: float = DEFAULT_MARGIN,
    target_under: float = DEFAULT_TARGET_UNDER,
    modes: Sequence[MarginMode] = ("fixed", "calibrated"),
) -> dict[str, Any]:
    """Leave one family out: per target family, models and margins fitted on the
    other families' history score this family's pairs. The same jobs run on
    every family, as a benchmark suite would on a new cloud: what is held out is
    the hardware, not the work. ``overall`` pools every family's cases."""
    started = time.monotonic()
    families = np.asarray([r.target.family or "-" for r in data.records], dtype=np.str_)
    kinds = sorted(set(families.tolist()))
    if len(kinds) < 2:
        raise ConfigError("--history", f"leave-one-family-out needs two families, got {kinds}")
    scored = data.largest_targets() if pairs == "largest" else np.ones(len(data), dtype=np.bool_)
    overall, order = _Collected(), []
    by_family: dict[str, Any] = {}
    for fam in kinds:
        tr, te = np.flatnonzero(families != fam), np.flatnonzero((families == fam) & scored)
        if te.size == 0 or data.take(tr).jobs < 2:
            continue
        c = _Collected()
        _fold(data.take(tr), data.take(te), c, margin, target_under, modes)
        overall.extend(c)
        order.append(te)
        held = data.take(te)
        by_family[fam] = _complete(
            _report(held, np.ones(len(held), dtype=np.bool_), c, modes, target_under),
            pairs, 1, f"target family (trained without {fam})", margin, target_under,
            started,
        )  # fmt: skip
    cases = data.take(np.concatenate(order))
    report = _report(cases, np.ones(len(cases), dtype=np.bool_), overall, modes, target_under)
    report["history"] = _report(data, scored, _Collected(), (), target_under)["history"]
    return {
        "protocol": "lofo",
        "overall": _complete(
            report, pairs, len(by_family), "target family", margin, target_under, started
        ),
        "by_family": by_family,
        "seconds": round(time.monotonic() - started, 1),
    }


def evaluate_resampled(
    data: Dataset,
    resampled: Dataset,
    *,
    folds: int = 5,
    pairs: Pairs = "largest",
    margin: float = DEFAULT_MARGIN,
    target_under: float = DEFAULT_TARGET_UNDER,
    modes: Sequence[MarginMode] = ("fixed", "calibrated"),
    step_s: float = RESAMPLE_S,
) -> dict[str, Any]:
    """The same history at another sampling interval (``resampled``, pair for pair
    ``data``'s): models and margins fitted on ``data`` score the resampled test
    jobs (``trained_1s``), and grouped cross-validation on ``resampled`` alone
    (``trained_resampled``). Folds are grouped by job in both."""
    started = time.monotonic()
    if not _aligned(data, resampled):
        raise ConfigError("--history", "the resampled history does not hold the same pairs")
    kw: dict[str, Any] = {
        "folds": folds,
        "pairs": pairs,
        "margin": margin,
        "target_under": target_under,
        "modes": modes,
    }
    across = evaluate(data, rescored=resampled, **kw)["rescored"]
    return {
        "protocol": "resample5",
        "step_s": step_s,
        "trained_1s": across,
        "trained_resampled": evaluate(resampled, **kw),
        "seconds": round(time.monotonic() - started, 1),
    }


def _complete(
    report: dict[str, Any],
    pairs: Pairs,
    folds: int,
    grouped_by: str,
    margin: float,
    target_under: float,
    started: float,
) -> dict[str, Any]:
    """The keys :func:`vmshadow.predict.evaluate.evaluate` reports beside the figures."""
    return {
        **report,
        "pairs": pairs,
        "folds": folds,
        "grouped_by": grouped_by,
        "margin": margin,
        "target_under": target_under,
        "compared": "before rounding (need x margin), capped at the target's capacity",
        "seconds": round(time.monotonic() - started, 1),
    }
