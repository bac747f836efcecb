"""Saving and loading trained models: ``models.joblib`` plus ``models.json``,
and the learned correction of the ramp beside them (``correction.joblib``
plus ``correction.json``).

The JSON holds what a user or the controller needs to trust a model without
unpickling it: history size and jobs, sources, when it was trained, the
versions it was trained with, the margin mode and margins, the features.

joblib files are pickles: load them only from vmshadow's own data folder
(``<data_dir>/models`` by default), never from a place others can write to.
A model saved by another scikit-learn version, for other features, or in an
older format (format 1: one calibrated margin per resource, before the
conformal margins per stratum) is refused with a message that says to retrain.
"""

from __future__ import annotations

import json
import math
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.conformal import ConformalMargin
from vmshadow.predict.correction import CORRECTION_FEATURES, Correction
from vmshadow.predict.features import FEATURES
from vmshadow.predict.models import ModelSet

MODELS_FILE = "models.joblib"
META_FILE = "models.json"
FORMAT = 2  # 2: conformal margins per stratum (``conformal``)


def _vmshadow_version() -> str:
    try:
        return version("vmshadow")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def save_models(models: ModelSet, directory: Path) -> dict[str, Any]:
    """Write the models (when any) and the metadata; return the metadata written."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        **models.meta,
        "format": FORMAT,
        "method": models.method,
        "margins": models.margins,
        "conformal": (
            {res: c.as_dict() for res, c in models.conformal.items()} if models.conformal else None
        ),
        "features": list(FEATURES),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "vmshadow": _vmshadow_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
            "python": platform.python_version(),
        },
    }
    target = directory / MODELS_FILE
    if models.models is not None:
        tmp = target.with_suffix(".tmp")
        joblib.dump(models.models, tmp)
        tmp.replace(target)
    else:
        target.unlink(missing_ok=True)
    tmp_meta = directory / (META_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp_meta.replace(directory / META_FILE)
    return meta


def load_models(directory: Path) -> ModelSet | None:
    """The saved models, or None when nothing was trained there yet."""
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(meta_path), f"unreadable model metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ConfigError(
            str(meta_path),
            f"saved in model format {meta.get('format')}, this vmshadow reads format {FORMAT} "
            "(conformal margins): retrain with `vmshadow model train`",
        )
    if meta.get("features") != list(FEATURES):
        raise ConfigError(
            str(meta_path), "saved for another feature set: retrain with `vmshadow model train`"
        )
    saved = meta.get("versions", {}).get("scikit-learn")
    margins = {str(k): float(v) for k, v in meta.get("margins", {}).items()}
    try:
        stored = meta.get("conformal") or {}
        conformal = {str(r): ConformalMargin.from_dict(d) for r, d in stored.items()} or None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(str(meta_path), f"unreadable conformal margins ({exc})") from exc
    if meta.get("method") != "quantile-model":
        return ModelSet(None, margins, meta, conformal)
    if saved != sklearn.__version__:
        raise ConfigError(
            str(meta_path),
            f"trained with scikit-learn {saved}, this is {sklearn.__version__}: "
            "retrain with `vmshadow model train`",
        )
    try:
        models = joblib.load(directory / MODELS_FILE)
    except (OSError, EOFError, ValueError) as exc:
        raise ConfigError(str(directory / MODELS_FILE), f"unreadable models ({exc})") from exc
    return ModelSet(models, margins, meta, conformal)


# -- the learned correction of the ramp (``predict.correction``) -------------------------
CORRECTION_FILE = "correction.joblib"
CORRECTION_META = "correction.json"
CORRECTION_FORMAT = 1


def save_correction(correction: Correction, directory: Path) -> dict[str, Any]:
    """Write the correction beside the models (estimators only when trained);
    the JSON is written last, so that a service reloading on its time
    (``predict.choice.LivePredictor``) never reads a half-written pair."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        **correction.meta,
        "format": CORRECTION_FORMAT,
        "method": "learned-correction" if correction.estimators else "none",
        "margins": correction.margins,
        # An interval bound too few records reach is infinite; JSON says null.
        "residuals": {
            r: [b if math.isfinite(b) else None for b in v] for r, v in correction.residuals.items()
        },
        "features": list(CORRECTION_FEATURES),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"vmshadow": _vmshadow_version(), "scikit-learn": sklearn.__version__},
    }
    target = directory / CORRECTION_FILE
    if correction.estimators is not None:
        tmp = target.with_suffix(".tmp")
        joblib.dump(correction.estimators, tmp)
        tmp.replace(target)
    else:
        target.unlink(missing_ok=True)
    tmp_meta = directory / (CORRECTION_META + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp_meta.replace(directory / CORRECTION_META)
    return meta


def load_correction(directory: Path) -> Correction | None:
    """The saved correction, or None when none was trained there yet."""
    meta_path = directory / CORRECTION_META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(meta_path), f"unreadable correction metadata ({exc})") from exc
    retrain = "retrain with `vmshadow model train`"
    if meta.get("format") != CORRECTION_FORMAT or meta.get("features") != list(CORRECTION_FEATURES):
        raise ConfigError(str(meta_path), f"saved for another format or features: {retrain}")
    if meta.get("method") != "learned-correction":
        return Correction(None, meta=meta)
    saved = meta.get("versions", {}).get("scikit-learn")
    if saved != sklearn.__version__:
        raise ConfigError(
            str(meta_path),
            f"trained with scikit-learn {saved}, this is {sklearn.__version__}: " f"{retrain}",
        )
    try:
        estimators = joblib.load(directory / CORRECTION_FILE)
        margins = {str(r): float(m) for r, m in meta["margins"].items()}
        residuals = {
            str(r): (
                -math.inf if v[0] is None else float(v[0]),
                math.inf if v[1] is None else float(v[1]),
            )
            for r, v in meta["residuals"].items()
        }
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            str(directory / CORRECTION_FILE), f"unreadable ({exc}): {retrain}"
        ) from exc
    return Correction(estimators, margins, residuals, meta)
