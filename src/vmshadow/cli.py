"""The ``vmshadow`` command line (Typer + Rich).

Thin on purpose: each command loads the settings once, calls one use case
and renders its result as a table, or as one JSON document with ``--json``.
Errors are shown as one line naming what failed, never as a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vmshadow.cli_client import register as register_client_commands
from vmshadow.cli_predict import history_app, model_app
from vmshadow.config import Settings, load_settings
from vmshadow.doctor import run_doctor
from vmshadow.domain.errors import ConfigError, VmshadowError
from vmshadow.image.builder import build_image, find_image, list_images

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
image_app = typer.Typer(no_args_is_help=True, help="Build and inspect the shadow base image.")
shadow_app = typer.Typer(no_args_is_help=True, help="Run shadows by hand.")
app.add_typer(image_app, name="image")
app.add_typer(shadow_app, name="shadow")
profile_app = typer.Typer(no_args_is_help=True, help="Workload profiles.")
app.add_typer(profile_app, name="profile")
app.add_typer(history_app, name="history")
app.add_typer(model_app, name="model")
register_client_commands(app)  # launch, resize, attach, ls, show, cancel

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
UriOpt = Annotated[str | None, typer.Option("--uri", help="libvirt URI (default qemu:///system)")]


def _settings(uri: str | None = None) -> Settings:
    return load_settings({("libvirt_uri",): uri})


def _fail(exc: BaseException) -> typer.Exit:
    # escape: messages quote user input such as an fio job's "[section]", not markup.
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=1)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so every cleanup path runs for both."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _guarded(fn: Callable[[], T]) -> T:
    try:
        with _sigterm_as_interrupt():
            return fn()
    except VmshadowError as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: the shadow and its disks were destroyed[/]")
        raise typer.Exit(code=130) from None


# -- doctor ----------------------------------------------------------------------------
@app.command()
def doctor(json_out: JsonFlag = False, uri: UriOpt = None) -> None:
    """Check libvirt, QEMU, the accelerator, the image and host capacity."""
    report = _guarded(lambda: run_doctor(_settings(uri)))
    if json_out:
        out.print_json(json.dumps(report))
    else:
        table = Table(title="vmshadow doctor", show_header=False)
        for check in report["checks"]:
            mark = "[green]ok[/]" if check["ok"] else "[red]FAIL[/]"
            table.add_row(mark, check["name"], check["detail"])
        out.print(table)
        for check in report["checks"]:
            if not check["ok"] and check.get("fix"):
                out.print(f"[red]{check['name']}[/]: {check['fix']}")
    if not report["ok"]:
        raise typer.Exit(code=1)


# -- image -----------------------------------------------------------------------------
@image_app.command("build")
def image_build(
    force: Annotated[bool, typer.Option(help="Rebuild even if inputs are unchanged.")] = False,
) -> None:
    """Build the shadow base image from Debian packages (cached by its inputs)."""
    settings = _settings()
    files = _guarded(
        lambda: build_image(settings.images_dir, force=force, log=lambda m: err.print(f"  {m}"))
    )
    out.print(f"{files.directory}  {files.size_bytes() / 2**20:.0f} MiB")


@image_app.command("status")
def image_status(json_out: JsonFlag = False) -> None:
    """List built images and say which one matches today's inputs."""
    settings = _settings()
    current = _guarded(lambda: find_image(settings.images_dir))
    rows = [
        {
            "digest": img.directory.name,
            "current": current is not None and img.directory == current.directory,
            "complete": img.complete(),
            "size_mib": round(img.size_bytes() / 2**20, 1) if img.complete() else None,
            "built_at": img.manifest.get("built_at"),
            "path": str(img.directory),
        }
        for img in list_images(settings.images_dir)
    ]
    if json_out:
        out.print_json(json.dumps(rows))
        return
    table = Table("digest", "current", "size MiB", "built at", "path")
    for r in rows:
        table.add_row(
            str(r["digest"]),
            "yes" if r["current"] else "",
            str(r["size_mib"]),
            str(r["built_at"]),
            str(r["path"]),
        )
    out.print(table)


# -- shadow ----------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _phase_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"shadow {report['shadow_id']} - profile {report['profile']} "
        f"({report['accelerator']})"
    )
    table.add_column("phase")
    for col in ("P95 busy vCPU", "peak mem MiB", "P95 IOPS"):
        table.add_column(f"{col}\nhost", justify="right")
        table.add_column("guest", justify="right")
    for ph in report["phases"]:
        h, g = ph["host"], ph["guest"]
        table.add_row(
            ph["phase_id"],
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
    json_out: JsonFlag = False,
    uri: UriOpt = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
) -> None:
    """Boot a shadow, run a profile in it, print what it used, destroy it."""
    from vmshadow.shadow.runner import Progress as RunProgress
    from vmshadow.shadow.runner import run_profile

    settings = _settings(uri)
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
            f"phase {spec.phase_id} ({spec.kind})", total=spec.duration_s
        )

    def point(p: Any) -> None:
        if p.phase_id in tasks and p.source.value == "guest":
            bar.advance(tasks[p.phase_id], 1)

    def phase_done(spec: Any) -> None:
        bar.update(tasks[spec.phase_id], completed=spec.duration_s)

    callbacks = RunProgress(
        stage=lambda m: console.print(f"[dim]-[/] {m}"),
        phase_started=phase_started,
        phase_done=phase_done,
        point=point,
    )

    def go() -> dict[str, Any]:
        with bar:
            return run_profile(settings, profile, progress=callbacks, deadline_s=timeout)

    report = _guarded(go)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(_phase_table(report))
    t = report["timings"]
    out.print(
        f"boot {t['boot_s']:.1f} s, agent ready {t['agent_ready_s']:.1f} s, "
        f"profile {t['profile_s']:.1f} s, total {t['total_s']:.1f} s; shadow destroyed"
    )


@shadow_app.command("gc")
def shadow_gc(
    uri: UriOpt = None,
    all_shadows: Annotated[bool, typer.Option("--all", help="Destroy every shadow.")] = False,
) -> None:
    """Destroy shadows left behind by crashed runs (their owning process is gone)."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
    from vmshadow.shadow.reaper import reap_orphans

    settings = _settings(uri)

    def go() -> list[str]:
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            return reap_orphans(hv, settings.runs_dir, force=all_shadows)

    reaped = _guarded(go)
    out.print(f"removed {len(reaped)} leftover(s)" + (f": {', '.join(reaped)}" if reaped else ""))


def _parse_memory(text: str | None) -> int | None:
    """'4G', '512M', '2048' (MiB) -> MiB."""
    if text is None:
        return None
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"G": 1024, "M": 1, "T": 1024 * 1024}.get(t[-1:], None)
    number = t[:-1] if scale else t
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise _fail(ConfigError("--memory", f"{text!r} is not a size like 4G or 512M")) from None
    return int(value)


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
            p.unit,
            f"{c.cpu_percent:g} / {c.memory_mib:g} / {c.iops:g}",
            ", ".join(f"{x:g}" for x in p.ramp),
            p.description,
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
        out.print(f"  fio job {escape(f'[{job.name}]')}: {json.dumps(job.params.to_dict())}")
        for note in job.notes:
            out.print(f"  note: {escape(note)}")

    if path.endswith(".fio"):
        job = _guarded(lambda: read_fio_job(path))
        out.print(f"{path}: fio job accepted")
        show(job)
        return
    p = _guarded(lambda: load_profile(path))
    out.print(f"{path}: profile {p.name} ({p.unit}), ramp {', '.join(f'{x:g}' for x in p.ramp)}")
    if p.fio is not None:
        show(p.fio)


@app.command()
def plan(
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file.")],
    load: Annotated[
        float | None, typer.Option(help="Expected load, in the profile's unit.")
    ] = None,
    cpus: Annotated[int | None, typer.Option(help="Target vCPUs, if you have one in mind.")] = None,
    memory: Annotated[str | None, typer.Option(help="Target memory, e.g. 4G.")] = None,
    flavours: Annotated[
        str | None,
        typer.Option(
            "--flavours",
            help="CSV flavour catalogue (name,vcpus,memory_mib[,price][,iops]): round the "
            "recommendation to its cheapest covering flavour.",
        ),
    ] = None,
    json_out: JsonFlag = False,
    uri: UriOpt = None,
) -> None:
    """Shadow -> prediction, once, without launching anything."""
    from vmshadow.domain.allocation import Allocation
    from vmshadow.predict.trackrecord import track_record_text
    from vmshadow.shadow.planner import plan as run_plan
    from vmshadow.shadow.runner import Progress as RunProgress

    settings = _settings(uri)
    if flavours is not None:
        from pathlib import Path

        settings = settings.model_copy(update={"flavours_file": Path(flavours)})
    console = err if json_out else out
    mem = _parse_memory(memory)
    target = None
    if cpus is not None or mem is not None:
        target = _guarded(lambda: Allocation(vcpus=cpus or 1, memory_mib=mem or 512))
    callbacks = RunProgress(stage=lambda m: console.print(f"[dim]-[/] {m}"))
    doc = _guarded(lambda: run_plan(settings, profile, load, target=target, progress=callbacks))
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    p = doc["prediction"]
    table = Table(title=f"plan: {profile} at {load:g} {doc['unit'] or ''}" if load else "plan")
    # The model's margin multiplies its P90 (per resource); the ramp's its one estimate.
    base = p["p90"] or p["median"]
    margins = p["detail"].get("margins") or {}
    table.add_column("resource")
    table.add_column("median need", justify="right")
    if p["p90"]:
        table.add_column("P90", justify="right")
    table.add_column("x margin", justify="right")
    table.add_column("recommended", justify="right")
    units = {"vcpus": "vCPU", "memory_mib": "MiB", "iops": "IOPS"}

    def fmt(res: str, v: float) -> str:
        return f"{v:.2f}" if res == "vcpus" else f"{v:.0f}"

    for res, unit in units.items():
        m = float(margins.get(res, p["margin"]))
        rec = p["recommended"][res]
        cells = [unit, fmt(res, p["median"][res])]
        if p["p90"]:
            cells.append(fmt(res, p["p90"][res]))
        cells += [f"{fmt(res, base[res] * m)} (x{m:g})", "no cap" if rec is None else str(rec)]
        table.add_row(*cells)
    out.print(table)
    out.print(f"[dim]{p['label']}; history records: {p['history_size']}[/]")
    record = track_record_text(p["detail"].get("held_out"))
    if record:
        out.print(f"[dim]{record}[/]")
    t = doc["timings"]
    out.print(
        f"agent ready {t['agent_ready_s']:.1f} s, profile {t['profile_s']:.1f} s, "
        f"total {t['total_s']:.1f} s ({doc['accelerator']}); shadow destroyed"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8600).")] = None,
    uri: UriOpt = None,
) -> None:
    """Run the service: the REST API (and web UI) with the transition controller."""
    from vmshadow.server import serve as run_service

    overrides: dict[tuple[str, ...], Any] = {("api", "host"): host, ("api", "port"): port}
    if uri:
        overrides[("libvirt_uri",)] = uri
    settings = _guarded(lambda: load_settings(overrides))
    run_service(settings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
