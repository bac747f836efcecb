"""``vmshadow shadow run`` and ``vmshadow shadow gc``: shadows by hand."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.common import JsonFlag, UriOpt, err, guarded, out, settings_for
from vmshadow.domain.prediction import shadow_os_notes

shadow_app = typer.Typer(no_args_is_help=True, help="Run shadows by hand.")


def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def boot_line(timings: dict[str, Any]) -> str:
    """``boot: restored`` (from the image's template) or ``boot: cold (why)``."""
    boot, reason = timings.get("boot"), timings.get("boot_reason")
    if not boot:
        return ""
    return f"boot: {boot}" + (f" ({reason})" if reason else "")


def _phase_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=Text(
            f"shadow {report['shadow_id']} - profile {report['profile']} "
            f"({report['accelerator']})"
        )
    )
    table.add_column("phase")
    for col in ("P95 busy vCPU", "peak mem MiB", "P95 IOPS"):
        table.add_column(f"{col}\nhost", justify="right")
        table.add_column("guest", justify="right")
    for ph in report["phases"]:
        h, g = ph["host"], ph["guest"]
        table.add_row(
            Text(str(ph["phase_id"])),
            _fmt(h["p95_busy_vcpus"]),
            _fmt(g["p95_busy_vcpus"]),
            _fmt(h["peak_mem_used_mib"], 0),
            _fmt(g["peak_mem_used_mib"], 0),
            _fmt(h["p95_iops"], 0),
            _fmt(g["p95_iops"], 0),
        )
    return table


@shadow_app.command("run")
def shadow_run(
    profile: Annotated[str, typer.Option(help="Workload profile to run.")] = "smoke",
    image: Annotated[
        str,
        typer.Option(help="'builtin', or a store image whose own OS the shadow boots."),
    ] = "builtin",
    json_out: JsonFlag = False,
    uri: UriOpt = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
) -> None:
    """Boot a shadow, run a profile in it, print what it used, destroy it."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
    from vmshadow.usecases.progress import Progress as RunProgress
    from vmshadow.usecases.shadowrun import shadow_run as run_in_shadow

    guarded(lambda: check.positive(timeout, "--timeout"))
    guarded(lambda: check.image_name(image))

    settings = settings_for(uri)
    console = err if json_out else out
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def phase_started(spec: Any) -> None:
        tasks[spec.phase_id] = bar.add_task(
            escape(f"phase {spec.phase_id} ({spec.kind})"), total=spec.duration_s
        )

    def point(p: Any) -> None:
        if p.phase_id in tasks and p.source.value == "guest":
            bar.advance(tasks[p.phase_id], 1)

    def phase_done(spec: Any) -> None:
        bar.update(tasks[spec.phase_id], completed=spec.duration_s)

    callbacks = RunProgress(
        stage=lambda m: console.print(f"[dim]-[/] {escape(m)}"),
        phase_started=phase_started,
        phase_done=phase_done,
        point=point,
    )

    def go() -> dict[str, Any]:
        with bar:
            return run_in_shadow(
                settings,
                profile,
                connect=LibvirtHypervisor,
                progress=callbacks,
                deadline_s=timeout,
                image=image,
            )

    report = guarded(go)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(_phase_table(report))
    t = report["timings"]
    out.print(
        f"boot {t['boot_s']:.1f} s, agent ready {t['agent_ready_s']:.1f} s, "
        f"profile {t['profile_s']:.1f} s, total {t['total_s']:.1f} s; shadow destroyed"
    )
    if boot_line(t):
        out.print(Text(boot_line(t)))
    for line in shadow_os_notes(report):
        out.print(Text(line))


@shadow_app.command("gc")
def shadow_gc(
    uri: UriOpt = None,
    all_shadows: Annotated[bool, typer.Option("--all", help="Destroy every shadow.")] = False,
) -> None:
    """Destroy shadows left behind by crashed runs (their owning process is gone)."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
    from vmshadow.shadow.reaper import reap_orphans

    settings = settings_for(uri)

    def go() -> list[str]:
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            return reap_orphans(hv, settings.runs_dir, force=all_shadows)

    reaped = guarded(go)
    out.print(
        Text(f"removed {len(reaped)} leftover(s)" + (f": {', '.join(reaped)}" if reaped else ""))
    )
