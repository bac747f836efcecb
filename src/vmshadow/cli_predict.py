"""``vmshadow history ...`` and ``vmshadow model ...``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vmshadow.config import load_settings

history_app = typer.Typer(no_args_is_help=True, help="Import usage history.")
model_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the prediction models.")
out = Console()
err = Console(stderr=True)

HistoryOpt = Annotated[
    Path, typer.Option("--history", help="Runs laid out as <vm_type>/<job>_<input>_<run>/.")
]
CatalogOpt = Annotated[
    Path | None, typer.Option("--catalog", help="vm_type,family,vcpus,memory_gib CSV.")
]


def _guard(fn: Any) -> Any:
    from vmshadow.domain.errors import VmshadowError

    try:
        return fn()
    except VmshadowError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from None


def _pairs(history: Path, catalog: Path | None) -> Any:
    from vmshadow.predict.history import import_runs, read_catalog

    cat = catalog or history / "vm-types.csv"
    return import_runs(history, read_catalog(cat))


@history_app.command("import")
def history_import(
    directory: Annotated[
        Path, typer.Argument(help="Runs laid out as <vm_type>/<job>_<input>_<run>/.")
    ],
    fmt: Annotated[str, typer.Option("--format", help="Only 'sar' so far.")] = "sar",
    catalog: CatalogOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import shadow/full-VM pairs into the store (re-importing replaces, never doubles)."""
    from sqlalchemy import delete

    from vmshadow.domain.errors import ConfigError
    from vmshadow.predict.evaluate import observed_value, shadow_value
    from vmshadow.store.db import make_engine, migrate
    from vmshadow.store.models import HistoryRow
    from vmshadow.store.repository import Store, now

    if fmt != "sar":
        _guard(lambda: (_ for _ in ()).throw(ConfigError("--format", "only 'sar' is supported")))
    res = _guard(lambda: _pairs(directory, catalog))
    settings = _guard(load_settings)
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    source = f"sar:{directory.resolve()}"
    with store.session() as s, s.begin():
        s.execute(delete(HistoryRow).where(HistoryRow.source == source))
        for p in res.pairs:
            s.add(
                HistoryRow(
                    transition_id=None,
                    created_at=now(),
                    source=source,
                    job=p.job,
                    profile=None,
                    load=None,
                    shadow={
                        "type": p.shadow.name,
                        "vcpus": p.shadow.vcpus,
                        "memory_mib": p.shadow.memory_mib,
                        "need": {r: shadow_value(p, r) for r in ("vcpus", "memory_mib", "iops")},
                        "input": p.input,
                    },
                    target={
                        "type": p.target.name,
                        "vcpus": p.target.vcpus,
                        "memory_mib": p.target.memory_mib,
                    },
                    observed={r: observed_value(p, r) for r in ("vcpus", "memory_mib", "iops")},
                    observed_s=float(p.observed.seconds),
                )
            )
    doc = {
        "imported": len(res.pairs),
        "runs": res.runs,
        "skipped_not_completed": res.skipped_incomplete,
        "unreadable": len(res.unreadable),
        "history_records": store.history_count(),
    }
    if json_out:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        out.print(
            f"imported {doc['imported']} pairs from {doc['runs']} runs "
            f"({doc['skipped_not_completed']} not completed, {doc['unreadable']} unreadable); "
            f"{doc['history_records']} history records in the store"
        )


@model_app.command("evaluate")
def model_evaluate(
    history: HistoryOpt,
    catalog: CatalogOpt = None,
    margin_mode: Annotated[str, typer.Option(help="fixed (x1.2) or calibrated")] = "fixed",
    folds: Annotated[int, typer.Option(min=2, max=20)] = 5,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Grouped cross-validation (by job) of the models beside the three baselines."""
    from vmshadow.domain.errors import ConfigError
    from vmshadow.predict.evaluate import evaluate

    if margin_mode not in ("fixed", "calibrated"):
        _guard(lambda: (_ for _ in ()).throw(ConfigError("--margin-mode", "fixed or calibrated")))
    res = _guard(lambda: _pairs(history, catalog))
    if len({p.job for p in res.pairs}) < 2:
        _guard(lambda: (_ for _ in ()).throw(ConfigError("--history", "needs at least two jobs")))
    report = evaluate(res.pairs, margin_mode=margin_mode, folds=folds)
    report["skipped_not_completed"] = res.skipped_incomplete
    report["unreadable"] = len(res.unreadable)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2, default=_nan) + "\n")
        return
    t = Table(
        title=f"{report['tested']} smallest->largest cases, {report['jobs']} jobs, "
        f"{report['folds']} folds grouped by job, margin {margin_mode}"
    )
    t.add_column("resource")
    t.add_column("method")
    t.add_column("under-prov.", justify="right")
    t.add_column("waste", justify="right")
    t.add_column("MdAPE / pinball P90", justify="right")
    names = {
        "model": "quantile model (P90 x margin)",
        "b_shadow": "shadow usage x1.2",
        "b_linear": "linear in vCPUs x1.2",
        "b_full": "full VM as provisioned",
    }
    for res_name, r in report["resources"].items():
        for key, label in names.items():
            v = r[key]
            if v is None:
                t.add_row(res_name, label, "n/a", "n/a", "")
                continue
            extra = f"{v['mdape']:.3f} / {v['pinball_p90']:.3g}" if key == "model" else ""
            t.add_row(res_name, label, f"{v['under']:.1%}", _pct(v["waste"]), extra)
        verdict = "met" if r["target_met"] else "NOT met"
        t.add_row(
            "",
            f"[dim]target (<=5 %, <= half the cheapest baseline at <=5 %): {verdict}[/]",
            "",
            "",
            "",
        )
    out.print(t)
    out.print(f"evaluation took {report['seconds']} s")


@model_app.command("train")
def model_train(
    history: HistoryOpt,
    catalog: CatalogOpt = None,
    margin_mode: Annotated[str, typer.Option(help="fixed (x1.2) or calibrated")] = "fixed",
) -> None:
    """Train on all the history and save the models (with metadata) in <data_dir>/models."""
    from vmshadow.predict.training import train

    res = _guard(lambda: _pairs(history, catalog))
    settings = _guard(load_settings)
    meta = train(
        res.pairs,
        settings.data_dir / "models",
        margin_mode=margin_mode,
        margin=1.2,
        sources=[str(history.resolve())],
    )
    out.print(
        f"trained on {meta['history_size']} pairs ({meta['jobs']} jobs) in {meta['seconds']} s; "
        f"margins {meta['margins']}; saved in {settings.data_dir / 'models'}"
    )


def _pct(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.1%}"


def _nan(v: object) -> object:
    return None
