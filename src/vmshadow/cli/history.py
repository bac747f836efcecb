"""``vmshadow history ...``: import, list and remove history sources, and what
``vmshadow model ...`` shares with them (reading history, the store, errors).

Every import is one source (see :mod:`vmshadow.predict.history`): importing
another data set adds to the store; the same data set again (same resolved
path or same content, or the same ``--source`` name) replaces only itself.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmshadow.config import Settings, load_settings
from vmshadow.domain.errors import ConfigError, VmshadowError

if TYPE_CHECKING:
    from vmshadow.predict.history import HistoryRecord, ImportResult
    from vmshadow.predict.vmtypes import Catalog
    from vmshadow.store.repository import Store

history_app = typer.Typer(no_args_is_help=True, help="Import, list and remove usage history.")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class HistoryFormat(enum.StrEnum):
    SAR = "sar"  # the Lumos layout of sar CSV runs (its first name)
    LUMOS = "lumos"
    SYSSTAT = "sysstat"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="CSV of VM types (vm_type,family,vcpus,memory_gib); default: vm-types.csv "
        "in the history folder (or beside the manifest).",
    ),
]


def guarded(fn: Callable[[], T]) -> T:
    """One red line naming what failed instead of a traceback (as in ``cli/common.py``)."""
    try:
        return fn()
    except VmshadowError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None


def open_store(settings: Settings) -> Store:
    from vmshadow.store.db import make_engine, migrate
    from vmshadow.store.repository import Store

    engine = make_engine(settings.db_url)
    migrate(engine)
    return Store(engine)


def read_catalog_for(data: Path, catalog: Path | None) -> Catalog:
    from vmshadow.predict.vmtypes import read_catalog

    folder = data if data.is_dir() else data.parent
    path = catalog or folder / "vm-types.csv"
    if catalog is None and not path.is_file():
        raise ConfigError("--catalog", f"not given, and {path} does not exist")
    return read_catalog(path)


def import_path(
    path: Path, catalog: Path | None, option: str, fmt: HistoryFormat | None = None
) -> ImportResult:
    """Pairs from a folder of Lumos-layout runs or a sysstat manifest (a file);
    ``fmt`` None: by what ``path`` is."""
    from vmshadow.predict.history import import_sar_history
    from vmshadow.predict.sysstat import import_sysstat_history

    if fmt is None:
        fmt = HistoryFormat.SYSSTAT if path.is_file() else HistoryFormat.LUMOS
    if fmt is HistoryFormat.SYSSTAT:
        if not path.is_file():
            raise ConfigError(option, f"{path} is not a manifest file")
        return import_sysstat_history(path, read_catalog_for(path, catalog), option=option)
    if not path.is_dir():
        raise ConfigError(option, f"{path} is not a directory")
    return import_sar_history(path, read_catalog_for(path, catalog), option=option)


def load_history(history: str, catalog: Path | None) -> tuple[list[HistoryRecord], str]:
    """Records from the store, a folder of runs or a sysstat manifest, and a line
    saying what was read."""
    if history == "store":
        rows = open_store(load_settings()).all_history()
        records = [r.record for r in rows if r.record is not None]
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
    path = Path(history)
    if not path.exists():
        raise ConfigError("--history", f"{path} is not a directory, a manifest, nor 'store'")
    res = import_path(path, catalog, "--history")
    return res.records, (
        f"{len(res.records)} pairs from {res.runs} runs in {path} "
        f"({res.skipped_not_completed} not completed, {len(res.unreadable)} unreadable)"
    )


@history_app.command("import")
def history_import(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Runs laid out as <vm_type>/<framework>_<job>_<input>[_<run>]/, or a "
            "sysstat manifest (CSV: job,input,vm_type,run,file) with --format sysstat.",
        ),
    ],
    fmt: Annotated[
        HistoryFormat, typer.Option("--format", help="lumos (alias sar) or sysstat.")
    ] = HistoryFormat.LUMOS,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Name of this data set in the store; default: its path and a digest.",
        ),
    ] = None,
    catalog: CatalogOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Import shadow/full-VM pairs into the store as one source. Another data set
    adds to the store; the same one again replaces only its own records."""
    from vmshadow.predict.history import legacy_source, source_id
    from vmshadow.store.history import NewSource
    from vmshadow.store.repository import now

    def run() -> dict[str, Any]:
        started = time.monotonic()
        kind = HistoryFormat.SYSSTAT if fmt is HistoryFormat.SYSSTAT else HistoryFormat.LUMOS
        res = import_path(path, catalog, "DIR", kind)
        assert res.source is not None
        sid = res.source
        if source is not None:
            sid = source_id(sid.kind, path, sid.digest, source)
        store = open_store(load_settings())
        # The same data set under another name: the same place or the same content.
        same = [] if source is not None else store.same_sources(sid.location, sid.digest)
        known = {s.name: s for s in store.history_sources()}
        legacy = legacy_source(path)
        at = now()
        removed, added = store.import_source(
            NewSource(sid.name, sid.kind, sid.location, sid.digest, at),
            res.records,
            replaces=same,
        )
        return {
            "source": sid.name,
            "digest": sid.digest,
            "imported": added,
            "replaced": removed,
            "replaced_sources": sorted({*same, *([sid.name] if sid.name in known else [])}),
            "jobs": res.jobs,
            "runs": res.runs,
            "skipped_not_completed": res.skipped_not_completed,
            "unreadable": len(res.unreadable),
            "unreadable_runs": res.unreadable,
            "unknown_vm_types": res.unknown_types,
            # Imported before sources had identities, under the folder's name alone:
            # maybe this data, maybe another folder of that name, so left alone.
            "legacy_same_name": legacy
            if legacy in known and known[legacy].kind is None and legacy != sid.name
            else None,
            "history_records": store.history_count(),
            "seconds": round(time.monotonic() - started, 1),
        }

    doc = guarded(run)
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
    if doc["legacy_same_name"]:
        err.print(
            escape(
                f"note: source {doc['legacy_same_name']!r}, imported by an older vmshadow, "
                "may hold this same data; if so remove it: "
                f"vmshadow history rm {doc['legacy_same_name']!r}"
            )
        )


@history_app.command("ls")
def history_ls(json_out: JsonFlag = False) -> None:
    """List the sources in the store: records, when imported, content digest."""

    def run() -> list[dict[str, Any]]:
        return [s.as_dict() for s in open_store(load_settings()).history_sources()]

    rows = guarded(run)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        out.print("no history: import some with `vmshadow history import`")
        return
    t = Table(title="history sources", title_justify="left")
    for col in ("source", "records", "imported at", "digest"):
        t.add_column(col, justify="right" if col == "records" else "left")
    for r in rows:
        t.add_row(
            escape(r["source"]),
            str(r["records"]),
            (r["imported_at"] or "-")[:19],
            (r["digest"] or "-")[:12],
        )
    out.print(t)


@history_app.command("rm")
def history_rm(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="As `history ls` names it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Remove one source's records from the store."""

    def run() -> dict[str, Any]:
        store = open_store(load_settings())
        found = {s.name: s for s in store.history_sources()}.get(source)
        if found is None:
            raise ConfigError("source", f"no history source {source!r}: `vmshadow history ls`")
        if not yes and not typer.confirm(f"remove {found.records} records of {source!r}?"):
            raise ConfigError("source", "not removed (answer yes, or pass --yes)")
        removed = store.remove_source(source) or 0
        return {"source": source, "removed": removed, "history_records": store.history_count()}

    doc = guarded(run)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    out.print(
        Text(
            f"removed {doc['removed']} records of {doc['source']!r}; "
            f"{doc['history_records']} left"
        )
    )
