"""``vmshadow history ...`` and ``vmshadow model ...``: history import, model
training and honest evaluation.

Heavy libraries (numpy, scikit-learn) are imported inside the commands, so
that ``vmshadow --help`` stays fast.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from vmshadow.cli.evaluation import UNITS, print_evaluation
from vmshadow.config import Settings, load_settings
from vmshadow.domain.errors import ConfigError, VmshadowError

if TYPE_CHECKING:
    from vmshadow.predict.history import HistoryRecord
    from vmshadow.predict.margin import MarginMode
    from vmshadow.predict.vmtypes import Catalog
    from vmshadow.store.repository import Store

history_app = typer.Typer(no_args_is_help=True, help="Import usage history.")
model_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the prediction models.")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class HistoryFormat(enum.StrEnum):
    SAR = "sar"


class MarginChoice(enum.StrEnum):
    FIXED = "fixed"
    CALIBRATED = "calibrated"


class EvalMargins(enum.StrEnum):
    FIXED = "fixed"
    CALIBRATED = "calibrated"
    BOTH = "both"


class PairsChoice(enum.StrEnum):
    LARGEST = "largest"
    ALL = "all"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
HistoryOpt = Annotated[
    str,
    typer.Option(
        "--history",
        help="'store' (the imported history) or a folder of runs laid out as "
        "<vm_type>/<framework>_<job>_<input>[_<run>]/{sar.csv,report.json}.",
    ),
]
CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="CSV of VM types (vm_type,family,vcpus,memory_gib); default: vm-types.csv "
        "in the history folder.",
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


def _guarded(fn: Callable[[], T]) -> T:
    """One red line naming what failed instead of a traceback (as in ``cli/common.py``)."""
    try:
        return fn()
    except VmshadowError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None


def _store(settings: Settings) -> Store:
    from vmshadow.store.db import make_engine, migrate
    from vmshadow.store.repository import Store

    engine = make_engine(settings.db_url)
    migrate(engine)
    return Store(engine)


def _catalog(directory: Path, catalog: Path | None) -> Catalog:
    from vmshadow.predict.vmtypes import read_catalog

    path = catalog or directory / "vm-types.csv"
    if catalog is None and not path.is_file():
        raise ConfigError("--catalog", f"not given, and {path} does not exist")
    return read_catalog(path)


def _load_history(history: str, catalog: Path | None) -> tuple[list[HistoryRecord], str]:
    """Records from the store or a folder of runs, and a line saying what was read."""
    from vmshadow.predict.history import import_sar_history, record_from_row

    if history == "store":
        rows = _store(load_settings()).all_history()
        records = [r for r in (record_from_row(row) for row in rows) if r is not None]
        if not records:
            raise ConfigError(
                "--history",
                f"the store holds no usable history ({len(rows)} records): "
                "import some with `vmshadow history import`",
            )
        return (
            records,
            f"{len(records)} records from the store ({len(rows) - len(records)} unusable)",
        )
    directory = Path(history)
    if not directory.is_dir():
        raise ConfigError("--history", f"{directory} is not a directory (nor 'store')")
    res = import_sar_history(directory, _catalog(directory, catalog))
    return res.records, (
        f"{len(res.records)} pairs from {res.runs} runs in {directory} "
        f"({res.skipped_not_completed} not completed, {len(res.unreadable)} unreadable)"
    )


# -- history ---------------------------------------------------------------------------
@history_app.command("import")
def history_import(
    directory: Annotated[
        Path,
        typer.Argument(help="Runs laid out as <vm_type>/<framework>_<job>_<input>[_<run>]/."),
    ],
    fmt: Annotated[HistoryFormat, typer.Option("--format", help="Layout of the runs.")] = (
        HistoryFormat.SAR
    ),
    catalog: CatalogOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Import shadow/full-VM pairs into the store. Importing the same folder again
    replaces its records rather than adding them twice."""
    from vmshadow.predict.history import import_sar_history, sar_source
    from vmshadow.store.repository import now

    def run() -> dict[str, Any]:
        started = time.monotonic()
        if not directory.is_dir():
            raise ConfigError("DIR", f"{directory} is not a directory")
        res = import_sar_history(directory, _catalog(directory, catalog), option="DIR")
        store = _store(load_settings())
        source = sar_source(directory)
        at = now()
        removed, added = store.replace_history(source, (r.to_row(at) for r in res.records))
        return {
            "source": source,
            "imported": added,
            "replaced": removed,
            "jobs": res.jobs,
            "runs": res.runs,
            "skipped_not_completed": res.skipped_not_completed,
            "unreadable": len(res.unreadable),
            "unreadable_runs": res.unreadable,
            "unknown_vm_types": res.unknown_types,
            "history_records": store.history_count(),
            "seconds": round(time.monotonic() - started, 1),
        }

    doc = _guarded(run)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    out.print(
        Text(
            f"imported {doc['imported']} shadow/full-VM pairs ({doc['jobs']} jobs) from "
            f"{doc['runs']} runs as {doc['source']!r}"
            + (f", replacing {doc['replaced']}" if doc["replaced"] else "")
        )
    )
    out.print(
        f"skipped, not completed: {doc['skipped_not_completed']}; "
        f"unreadable: {doc['unreadable']}; {doc['history_records']} records in the store "
        f"({doc['seconds']} s)"
    )
    for run_name, reason in list(doc["unreadable_runs"].items())[:10]:
        err.print(f"[yellow]unreadable[/] {escape(f'{run_name}: {reason}')}")
    if doc["unknown_vm_types"]:
        ignored = ", ".join(doc["unknown_vm_types"])
        err.print(f"[yellow]not in the catalogue, ignored:[/] {escape(ignored)}")


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
    """Train the per-resource quantile models on all the history and save them."""
    from vmshadow.predict.dataset import Dataset
    from vmshadow.predict.models import train
    from vmshadow.predict.persist import save_models
    from vmshadow.predict.trackrecord import track_record_text

    def run() -> tuple[dict[str, Any], str]:
        settings = load_settings()
        records, read = _load_history(history, catalog)
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
        return meta, read

    meta, read = _guarded(run)
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
    out.print(f"training took {meta['seconds']} s")


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
    json_out: JsonFlag = False,
) -> None:
    """Cross-validate (folds grouped by job) the model beside the three baselines."""
    from vmshadow.predict.dataset import Dataset
    from vmshadow.predict.evaluate import evaluate

    modes: tuple[MarginMode, ...] = (
        ("fixed", "calibrated")
        if margin_mode is EvalMargins.BOTH
        else (cast("MarginMode", margin_mode.value),)
    )

    def run() -> tuple[dict[str, Any], str]:
        started = time.monotonic()
        records, read = _load_history(history, catalog)
        loaded = time.monotonic() - started
        report = evaluate(
            Dataset.of(records),
            folds=folds,
            pairs=pairs.value,
            margin=margin,
            target_under=target_under,
            modes=modes,
        )
        report["read"] = read
        report["seconds_reading"] = round(loaded, 1)
        return report, read

    report, read = _guarded(run)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
        return
    print_evaluation(out, report, read)
