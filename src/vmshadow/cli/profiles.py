"""``vmshadow profile list / schema / check``: the workload profiles."""

from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmshadow.cli.common import JsonFlag, guarded, out

if TYPE_CHECKING:
    from vmshadow.workloads.app import AppCommand

profile_app = typer.Typer(no_args_is_help=True, help="Workload profiles.")


@profile_app.command("list")
def profile_list(json_out: JsonFlag = False) -> None:
    """The built-in profiles, their load units and costs."""
    from vmshadow.workloads.profiles import builtin_profiles

    profiles = builtin_profiles()
    if json_out:
        sys.stdout.write(json.dumps([p.model_dump() for p in profiles.values()], indent=2) + "\n")
        return
    table = Table("profile", "unit", "per unit: CPU % / MiB / IOPS", "ramp", "what it mimics")
    table.add_row("smoke", "-", "-", "-", "a fixed check of every measurement")
    for p in profiles.values():
        c = p.per_unit
        table.add_row(
            p.name,
            Text(p.unit),
            f"{c.cpu_percent:g} / {c.memory_mib:g} / {c.iops:g}",
            ", ".join(f"{x:g}" for x in p.ramp),
            Text(p.description),
        )
    out.print(table)


@profile_app.command("schema")
def profile_schema_cmd() -> None:
    """Print the JSON schema user profile files are validated against."""
    from vmshadow.workloads.profiles import profile_schema

    sys.stdout.write(json.dumps(profile_schema(), indent=2) + "\n")


@profile_app.command("check")
def profile_check(
    path: Annotated[str, typer.Argument(help="A profile YAML file, or an fio job file (.fio).")],
) -> None:
    """Validate a profile or fio job file; errors name the line and the option."""
    from vmshadow.workloads.fiojob import FioJob, read_fio_job
    from vmshadow.workloads.profiles import load_profile

    def show(job: FioJob) -> None:
        out.print(Text(f"  fio job [{job.name}]: {json.dumps(job.params.to_dict())}"))
        for note in job.notes:
            out.print(f"  note: {escape(note)}")

    if path.endswith(".fio"):
        job = guarded(lambda: read_fio_job(path))
        out.print(Text(f"{path}: fio job accepted"))
        show(job)
        return
    p = guarded(lambda: load_profile(path))
    ramp = ", ".join(f"{x:g}" for x in p.ramp)
    out.print(Text(f"{path}: profile {p.name} ({p.unit}), ramp {ramp}"))
    if p.fio is not None:
        show(p.fio)
    if p.app is not None:
        show_app(p.app, p.ramp[0], p.unit)


def show_app(app: AppCommand, load: float, unit: str) -> None:
    """An app profile as the shadow will run it, the first ramp step filled in."""
    from vmshadow.config import ControllerSettings

    seconds = ControllerSettings().phase_s
    params = app.params(load)
    scale = f" x {app.unit_scale:g}" if app.unit_scale != 1.0 else ""
    out.print(
        Text(
            f"  app: {app.command[0]} as user {app.user}; achieved{scale} from "
            f"stdout by {app.achieved!r}"
        )
    )
    server = params.server_argv(seconds)
    if server is not None:
        out.print(Text(f"  server: {shlex.join(server)}"))
    if app.ready_port is not None:
        out.print(Text(f"  ready: 127.0.0.1:{app.ready_port} within {app.ready_timeout_s} s"))
    out.print(Text(f"  step 0 ({load:g} {unit}, {seconds} s): {shlex.join(params.argv(seconds))}"))
    out.print(
        "  note: runs only in a shadow of a store image that has the program; "
        "the built-in shadow OS refuses it"
    )
