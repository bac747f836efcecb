"""Train the per-resource quantile models on all history and save them with metadata."""

from __future__ import annotations

import json
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from vmshadow.predict.evaluate import (
    RESOURCES,
    QuantileModel,
    _oof_p90,
    calibrate_margin,
    features,
    observed_value,
)
from vmshadow.predict.history import Pair


def train(
    pairs: list[Pair], out_dir: Path, *, margin_mode: str, margin: float, sources: list[str]
) -> dict[str, Any]:
    started = time.monotonic()
    x = np.array([features(p) for p in pairs])
    groups = np.array([p.job for p in pairs])
    meta: dict[str, Any] = {
        "trained_at": datetime.now(UTC).isoformat(),
        "history_size": len(pairs),
        "jobs": len(set(groups)),
        "sources": sources,
        "margin_mode": margin_mode,
        "scikit_learn": sklearn.__version__,
        "margins": {},
    }
    models = {}
    for res in RESOURCES:
        models[res] = QuantileModel(res).fit(x, pairs)
        m = margin
        if margin_mode == "calibrated":
            req = np.array([observed_value(p, res) for p in pairs])
            m = calibrate_margin(_oof_p90(x, pairs, groups, res), req, 0.05)
        meta["margins"][res] = m
    out_dir.mkdir(parents=True, exist_ok=True)
    # pickle of our own models, read back only from our own data folder.
    (out_dir / "models.pkl").write_bytes(pickle.dumps(models))
    meta["seconds"] = round(time.monotonic() - started, 1)
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
