"""``vmshadow profile list / schema / check``: the workload profiles."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmshadow.cli.common import JsonFlag, guarded, out

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
