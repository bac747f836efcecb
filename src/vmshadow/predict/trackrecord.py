"""A model's held-out track record in words, for every view of a prediction.

Kept apart from :mod:`vmshadow.predict.predictor` so that the CLI client and
the web UI can say it without importing NumPy and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmshadow.domain.prediction import RESOURCES

_NAMES = {"vcpus": "vCPU", "memory_mib": "memory", "iops": "IOPS"}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def track_record_text(held_out: Mapping[str, Any] | None) -> str | None:
    """``meta["held_out"]`` of :func:`vmshadow.predict.models.train` in one
    sentence; None for a model saved without one."""
    if not held_out or not held_out.get("resources"):
        return None
    res = held_out["resources"]
    keys = [r for r in RESOURCES if r in res]
    short = ", ".join(f"{_pct(res[r]['under'])} ({_NAMES[r]})" for r in keys)
    unused = ", ".join(f"{_pct(res[r]['waste'])} ({_NAMES[r]})" for r in keys)
    chosen = " (the margins were chosen on them)" if held_out.get("margin_chosen_on_them") else ""
    return (
        f"On {held_out['records']:,} history records of jobs its fold models had not seen "
        f"({held_out['folds']} folds){chosen}, this model's recommendation fell short for "
        f"{short} of them; where it sufficed, on average {unused} of it went unused."
    )
