"""``vmshadow model ...``: model training and honest evaluation (``history``
commands are in ``cli/history.py``; ``history_app`` is re-exported here).

Heavy libraries (numpy, scikit-learn) are imported inside the commands, so
that ``vmshadow --help`` stays fast.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from vmshadow.cli.evaluation import (
    UNITS,
    evaluate_protocol,
    print_by_family,
    print_evaluation,
    print_protocol,
)
from vmshadow.cli.history import CatalogOpt, JsonFlag, guarded, history_app, load_history
from vmshadow.config import Settings, load_settings
from vmshadow.domain.errors import ConfigError

if TYPE_CHECKING:
    from vmshadow.predict.margin import MarginMode

__all__ = ["history_app", "model_app"]

model_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the prediction models.")
out = Console()
err = Console(stderr=True)


class MarginChoice(enum.StrEnum):
    FIXED = "fixed"
    CALIBRATED = "calibrated"


class EvalMargins(enum.StrEnum):
    FIXED = "fixed"
    CALIBRATED = "calibrated"
    BOTH = "both"


class ByChoice(enum.StrEnum):
    FAMILY = "family"


class ProtocolChoice(enum.StrEnum):
    GROUPED = "grouped"
    LOFO = "lofo"
    RESAMPLE5 = "resample5"


class PairsChoice(enum.StrEnum):
    LARGEST = "largest"
    ALL = "all"


HistoryOpt = Annotated[
    str,
    typer.Option(
        "--history",
        help="'store' (the imported history), a folder of runs laid out as "
        "<vm_type>/<framework>_<job>_<input>[_<run>]/{sar.csv,report.json}, or a "
        "sysstat manifest (see docs/prediction.md).",
    ),
]
MarginOpt = Annotated[
    float, typer.Option("--margin", min=1.0, max=5.0, help="The fixed margin over the P90.")
]
TargetUnderOpt = Annotated[
    float,
    typer.Option(
        "--target-under",
        min=0.0,
        max=0.5,
        help="Under-provisioning rate a calibrated margin must meet.",
    ),
]


# -- model -----------------------------------------------------------------------------
@model_app.command("train")
def model_train(
    history: HistoryOpt,
    catalog: CatalogOpt = None,
    margin_mode: Annotated[
        MarginChoice, typer.Option("--margin-mode", help="fixed, or calibrated on held-out jobs.")
    ] = MarginChoice.FIXED,
    margin: MarginOpt = 1.2,
    target_under: TargetUnderOpt = 0.05,
    models_dir: Annotated[
        Path | None, typer.Option("--models-dir", help="Default: <data_dir>/models.")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Train the per-resource quantile models on all the history and save them,
    with the learned correction of the ramp's extrapolation beside them."""
    from vmshadow.predict.correction import train_correction
    from vmshadow.predict.dataset import Dataset
    from vmshadow.predict.models import train
    from vmshadow.predict.persist import save_correction, save_models
    from vmshadow.predict.trackrecord import track_record_text

    def run() -> tuple[dict[str, Any], str]:
        settings = load_settings()
        records, read = load_history(history, catalog)
        started = time.monotonic()
        models = train(
            Dataset.of(records),
            margin_mode=margin_mode.value,
            margin=margin,
            target_under=target_under,
        )
        models.meta["seconds"] = round(time.monotonic() - started, 1)
        where = models_dir or settings.data_dir / "models"
        meta = save_models(models, where)
        meta["directory"] = str(where)
        # The correction calibrates on completed loaded launches only (the
        # store's ``vmshadow`` rows); imported pairs help its fit.
        correction = train_correction(
            records, target_under=target_under, ramp_margin=settings.controller.margin
        )
        meta["correction"] = save_correction(correction, where)
        return meta, read

    meta, read = guarded(run)
    if json_out:
        sys.stdout.write(json.dumps(meta, indent=2) + "\n")
        return
    out.print(f"[dim]{escape(read)}[/]")
    if meta["method"] != "quantile-model":
        out.print(f"[yellow]{escape(str(meta['reason']))}[/]")
    margins = ", ".join(f"{UNITS[r]} x{m:g}" for r, m in meta["margins"].items())
    out.print(
        f"{meta['method']}: {meta['history_size']} records from {meta['jobs']} jobs; "
        f"{meta['margin_mode']} margins {margins}; saved in {escape(meta['directory'])}"
    )
    record = track_record_text(meta.get("held_out"))
    if record:
        out.print(Text(record))
    out.print(Text(correction_text(meta["correction"], load_settings())))
    out.print(f"training took {meta['seconds']} s")


def correction_text(meta: dict[str, Any], settings: Settings) -> str:
    """What ``model train`` says of the learned correction it saved."""
    need = settings.controller.learned_min_history
    n = meta.get("ramp_records", 0)
    if meta.get("method") != "learned-correction":
        return f"learned correction of the ramp: not trained ({meta.get('reason')})"
    margins = ", ".join(f"{UNITS[r]} x{m:.2f}" for r, m in meta["margins"].items())
    used = "used" if n >= need else f"not used until {need} (controller.learned_min_history)"
    line = (
        f"learned correction of the ramp: {meta['records']} records ({n} completed loaded "
        f"launches, {used}); margins {margins}"
    )
    held = (meta.get("held_out") or {}).get("resources") or {}
    for res, fig in held.items():
        c, r = fig.get("corrected") or {}, fig.get("ramp_alone") or {}
        line += (
            f"\n  {UNITS[res]} held out: corrected {_pct(c.get('under'))} under / "
            f"{_pct(c.get('waste'))} waste, ramp alone {_pct(r.get('under'))} / "
            f"{_pct(r.get('waste'))}; interval held {_pct(fig.get('interval_covered'))}"
        )
    return line


def _pct(v: object) -> str:
    return f"{float(v) * 100:.1f} %" if isinstance(v, int | float) else "-"


@model_app.command("evaluate")
def model_evaluate(
    history: HistoryOpt,
    catalog: CatalogOpt = None,
    margin_mode: Annotated[
        EvalMargins, typer.Option("--margin-mode", help="Which margins to score the model with.")
    ] = EvalMargins.BOTH,
    margin: MarginOpt = 1.2,
    target_under: TargetUnderOpt = 0.05,
    folds: Annotated[int, typer.Option("--folds", min=2, max=20)] = 5,
    pairs: Annotated[
        PairsChoice,
        typer.Option("--pairs", help="Score smallest -> largest pairs only, or all pairs."),
    ] = PairsChoice.LARGEST,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Score the model saved in this folder (by `model train`) on the history, "
            "without retraining.",
        ),
    ] = None,
    by: Annotated[
        ByChoice | None,
        typer.Option("--by", help="With --model: figures per family of the target type too."),
    ] = None,
    protocol: Annotated[
        ProtocolChoice,
        typer.Option(
            "--protocol",
            help="grouped: folds by job (default); lofo: leave one family out; resample5: "
            "trained at 1 s, scored on the history resampled to 5 s (a Lumos folder).",
        ),
    ] = ProtocolChoice.GROUPED,
    json_out: JsonFlag = False,
) -> None:
    """Cross-validate (folds grouped by job) the model beside the three baselines;
    with --model, score a saved model on other history instead."""
    from vmshadow.predict.dataset import Dataset
    from vmshadow.predict.evaluate import evaluate, evaluate_saved
    from vmshadow.predict.persist import load_models

    modes: tuple[MarginMode, ...] = (
        ("fixed", "calibrated")
        if margin_mode is EvalMargins.BOTH
        else (cast("MarginMode", margin_mode.value),)
    )

    def run() -> tuple[dict[str, Any], str]:
        if by is not None and model is None:
            raise ConfigError("--by", "breaks down a saved model's scores: give --model DIR")
        if protocol is not ProtocolChoice.GROUPED and model is not None:
            raise ConfigError("--protocol", "retrains per held-out part: not with --model")
        started = time.monotonic()
        saved = None
        if model is not None:
            saved = load_models(model)
            if saved is None:
                raise ConfigError("--model", f"no saved model in {model} (`vmshadow model train`)")
        records, read = load_history(history, catalog)
        loaded = time.monotonic() - started
        data = Dataset.of(records)
        if protocol is not ProtocolChoice.GROUPED:
            folder = None if history == "store" else Path(history)
            report = evaluate_protocol(
                protocol.value,
                data,
                history=folder,
                catalog=catalog,
                folds=folds,
                pairs=pairs.value,
                margin=margin,
                target_under=target_under,
                modes=modes,
            )
        elif saved is not None:
            report = evaluate_saved(
                saved,
                data,
                pairs=pairs.value,
                margin=margin,
                target_under=target_under,
                by_family=by is ByChoice.FAMILY,
            )
            report["model"]["directory"] = str(model)
        else:
            report = evaluate(
                data,
                folds=folds,
                pairs=pairs.value,
                margin=margin,
                target_under=target_under,
                modes=modes,
            )
        report["read"] = read
        report["seconds_reading"] = round(loaded, 1)
        return report, read

    report, read = guarded(run)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
        return
    if protocol is not ProtocolChoice.GROUPED:
        print_protocol(out, report, read)
        return
    print_evaluation(out, report, read)
    print_by_family(out, report)
