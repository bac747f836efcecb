"""The evaluations test_lumos_targets asserts on, one per worker process.

They are independent (each protocol trains its own folds), and the models fit
on one thread each (``predict.models``), so running them side by side takes
the time of the longest rather than of all three. Each worker reads the history
itself: a record list is slower to pickle across than to read again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmshadow.predict.dataset import Dataset
from vmshadow.predict.evaluate import evaluate
from vmshadow.predict.history import import_sar_history
from vmshadow.predict.ood import evaluate_lofo, import_resampled
from vmshadow.predict.vmtypes import read_catalog


def _one(root: Path) -> Dataset:
    history = import_sar_history(root, read_catalog(root / "vm-types.csv"))
    assert history.runs == 1882 and len(history.records) == 3381
    return Dataset.of(history.records)


def _five(root: Path) -> Dataset:
    return Dataset.of(import_resampled(root, read_catalog(root / "vm-types.csv")).records)


def grouped(root: Path) -> dict[str, dict[str, Any]]:
    """5 job folds at 1 s, the same fold models also scoring the 5 s runs."""
    report = evaluate(_one(root), rescored=_five(root))
    return {"grouped": report, "1s->5s": report["rescored"]}


def lofo(root: Path) -> dict[str, dict[str, Any]]:
    return {"lofo": evaluate_lofo(_one(root))["overall"]}


def five_five(root: Path) -> dict[str, dict[str, Any]]:
    return {"5s->5s": evaluate(_five(root))}


PROTOCOLS = (grouped, five_five, lofo)  # the longest first
