"""``vmshadow ls``, ``show`` and ``cancel``: reading and ending transitions
through the service (the helpers and exit codes are ``cli.transitions``')."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.transitions import JsonFlag, UrlOpt, _api, _checked, _print_json, err, out
from vmshadow.cli.views import (
    detail_table,
    events_table,
    list_table,
    plain_list,
    prediction_notes,
    prediction_table,
)
from vmshadow.emit import FORMATS, emit, from_view

EmitOpt = Annotated[
    str | None,
    typer.Option(
        "--emit",
        metavar="FORMAT",
        help="Print the recommendation for another tool: " + ", ".join(FORMATS) + ".",
    ),
]


def ls(
    state: Annotated[
        str | None, typer.Option(help="Only transitions in this state (e.g. predicted).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    json_out: JsonFlag = False,
    url: UrlOpt = None,
) -> None:
    """List transitions, newest first.

    On a terminal, a table with a legend; otherwise (a pipe, a file) plain
    tab-separated rows under one header line, so `vmshadow ls | grep web1` works.
    """
    _checked(lambda: (check.state(state), check.limit(limit)))
    with _api(url, {"state": "--state", "limit": "--limit"}) as api:
        rows = api.list_transitions(state=state, limit=limit)
    if json_out:
        _print_json(rows)
        return
    if not sys.stdout.isatty():
        # Not Rich: Rich wraps at 80 columns when it sees no terminal, which cut
        # names in two and made grep miss them; the legend stays out of the data.
        sys.stdout.write(plain_list(rows))
        if not rows:
            err.print(Text("no transitions" + (f" in state {state}" if state else "")))
        return
    if not rows:
        out.print(Text("no transitions" + (f" in state {state}" if state else "")))
        return
    out.print(list_table(rows))


def show(
    tid: Annotated[str, typer.Argument(metavar="ID", help="Transition ID (`vmshadow ls`).")],
    json_out: JsonFlag = False,
    emit_fmt: EmitOpt = None,
    url: UrlOpt = None,
) -> None:
    """One transition: sizes, prediction, decision and its timeline.

    With --emit, only its recommendation (the decided size once decided) in
    another tool's form, for `virsh`, `virt-install`, Terraform, KubeVirt or
    OpenStack (docs/integrations.md)."""
    _checked(lambda: check.emit_format(emit_fmt))
    with _api(url) as api:
        doc = api.get(tid)
        if emit_fmt is not None:
            # Plain text on stdout, never Rich: it is meant for a file or a pipe.
            sys.stdout.write(emit(emit_fmt, from_view(doc)))
            return
    if json_out:
        _print_json(doc)
        return
    out.print(detail_table(doc))
    if doc.get("prediction"):
        out.print(prediction_table(doc, None))
        for line in prediction_notes(doc):
            out.print(line)
    out.print(events_table(doc))


def cancel(
    tid: Annotated[str, typer.Argument(metavar="ID", help="Transition ID (`vmshadow ls`).")],
    json_out: JsonFlag = False,
    url: UrlOpt = None,
) -> None:
    """Cancel a transition: its shadow and pending VM are removed; a running VM
    keeps running (only its observation stops)."""
    with _api(url) as api:
        api.cancel(tid)
        doc = api.get(tid)
    if json_out:
        _print_json(doc)
        return
    note = next((e["message"] for e in reversed(doc.get("events") or [])), "cancelled")
    out.print(Text(f"transition {tid}: {note}"))
