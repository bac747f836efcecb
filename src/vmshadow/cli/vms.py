"""``vmshadow vm ls`` and ``vmshadow vm delete``: the VMs vmshadow launched,
through the running service (``GET/DELETE /api/v1/vms``), as ``ls`` and
``cancel`` are for transitions.

Only VMs vmshadow launched are listed or deleted: the service refuses any
other domain by name. Exit codes are the client commands' (``transitions.py``):
1 refused, declined or not found, 2 bad usage, 3 the service cannot be reached.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.transitions import (
    EXIT_FAILED,
    PANEL,
    JsonFlag,
    UrlOpt,
    _api,
    _checked,
    _print_json,
    err,
    out,
)

vm_app = typer.Typer(
    no_args_is_help=True,
    help="The VMs vmshadow launched, on every host: list them, delete one.",
)
COLUMNS = ("NAME", "STATE", "SIZE", "HOST", "IMAGE", "ADDRESSES", "SSH")
LEGEND = "sizes: vCPU/MiB/IOPS ('-': no IOPS cap)"


def size_cell(vm: dict[str, Any]) -> str:
    """'2/1024/300', as `vmshadow ls` writes sizes; '-' for what is unknown or uncapped."""
    keys = ("vcpus", "memory_mib", "iops")
    return "/".join("-" if vm.get(k) is None else str(vm[k]) for k in keys)


def cells(vm: dict[str, Any]) -> list[str]:
    return [
        str(vm.get("name") or "-"),
        str(vm.get("state") or "-"),
        size_cell(vm),
        str(vm.get("host") or "-"),
        str(vm.get("image") or "-"),
        ", ".join(str(a) for a in vm.get("addresses") or []) or "-",
        str(vm.get("ssh") or "-"),
    ]


def plain_rows(items: list[dict[str, Any]]) -> str:
    """A header, then one tab-separated line per VM: for pipes (`vm ls | cut -f1`)."""

    def clean(cell: str) -> str:
        # A tab or newline in a cell (an address comes from the guest) would split a row.
        return " ".join(cell.split()) if any(c in cell for c in "\t\r\n") else cell

    lines = ["\t".join(COLUMNS)] + ["\t".join(clean(c) for c in cells(vm)) for vm in items]
    return "\n".join(lines) + "\n"


def vm_table(items: list[dict[str, Any]]) -> Table:
    """kubectl-like, no frame; every cell is Text, never markup (names and addresses
    come from libvirt and the guest)."""
    table = Table(
        box=None,
        pad_edge=False,
        padding=(0, 2, 0, 0),
        caption=LEGEND,
        caption_justify="left",
        header_style="bold",
    )
    for col in COLUMNS:
        # A name and an ssh command are copied into the next command: never cut them.
        table.add_column(col, no_wrap=col in ("NAME", "STATE", "SSH"), overflow="fold")
    for vm in items:
        table.add_row(*(Text(c) for c in cells(vm)))
    return table


def host_errors(errors: list[dict[str, Any]]) -> None:
    for e in errors:
        where = f"host {e.get('host')}" + (f", VM {e['vm']}" if e.get("vm") else "")
        err.print(Text.assemble(("warning: ", "yellow"), f"{where}: {e.get('error')}"))


@vm_app.command("ls")
def ls(json_out: JsonFlag = False, url: UrlOpt = None) -> None:
    """List the VMs vmshadow launched, on every host of the pool.

    On a terminal a table; otherwise (a pipe, a file) tab-separated rows under
    one header line. A host that cannot be reached is a warning on stderr; the
    VMs of the others are still listed.
    """
    with _api(url) as api:
        doc = api.vms()
    if json_out:
        _print_json(doc)
        return
    items: list[dict[str, Any]] = list(doc.get("items") or [])
    if not sys.stdout.isatty():
        sys.stdout.write(plain_rows(items))
        if not items:
            err.print(Text("no VMs launched by vmshadow"))
    elif not items:
        out.print(Text("no VMs launched by vmshadow"))
    else:
        out.print(vm_table(items))
    host_errors(list(doc.get("errors") or []))


def describe(vm: dict[str, Any]) -> str:
    """'VM web1 on host local: running, 2 vCPU, 1024 MiB; transition 1a2b (running)'."""
    size = f"{vm.get('vcpus', '?')} vCPU, {vm.get('memory_mib', '?')} MiB"
    text = f"VM {vm['name']} on host {vm.get('host')}: {vm.get('state')}, {size}"
    if vm.get("transition_id"):
        text += f"; transition {vm['transition_id']} ({vm.get('transition_state') or 'unknown'})"
    return text


def removed_text(vm: dict[str, Any]) -> str:
    """What the service removed, from the VM as it was just before."""
    text = f"deleted VM {vm['name']} from host {vm.get('host')}: "
    text += "destroyed, " if vm.get("running") else ""
    text += "undefined, its disks removed"
    if vm.get("vm_dir"):
        text += f" (folder {vm['vm_dir']})"
    if vm.get("transition_id") and vm.get("transition_terminal") is False:
        was = vm.get("transition_state")
        text += f"; transition {vm['transition_id']} ended first (it was {was})"
    return text


@vm_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The VM's name (`vmshadow vm ls`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    url: UrlOpt = None,
) -> None:
    """Delete a VM vmshadow launched: its transition is ended first if still going,
    then the VM is destroyed and its disks removed. Asks first, unless --yes."""
    _checked(lambda: check.vm_name(name))
    with _api(url, {"name": "NAME"}) as api:
        vm = api.vm(name)  # a 404 here names a domain vmshadow did not make
        if not yes:
            out.print(Text(describe(vm)))
            try:
                ok = typer.confirm(
                    f"Delete {name}? The VM is destroyed and its disks are deleted", default=False
                )
            except click.exceptions.Abort:  # stdin closed: a script without --yes
                ok = False
            if not ok:
                err.print(Text(f"not deleted: {name} is left as it is"))
                raise typer.Exit(EXIT_FAILED)
        api.delete_vm(name)
    out.print(Text(removed_text(vm)))


def register(app: typer.Typer) -> None:
    """Add ``vm`` to the ``vmshadow`` app, beside ``ls`` and ``cancel``: like them,
    it goes through the running service."""
    app.add_typer(vm_app, name="vm", rich_help_panel=PANEL)
