"""``vmshadow plan``: shadow -> prediction, once, without launching anything."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.common import JsonFlag, UriOpt, err, guarded, out, settings_for
from vmshadow.cli.shadow import boot_line
from vmshadow.cli.views import confidence_lines
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.confidence import confidence_of, coverage_text, interval_text
from vmshadow.domain.prediction import Prediction, Requirement, shadow_os_notes


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
    image: Annotated[
        str,
        typer.Option(
            help="'builtin', or a store image whose own OS the shadow boots (needed by a "
            "profile that runs an application of the image)."
        ),
    ] = "builtin",
    json_out: JsonFlag = False,
    emit_fmt: Annotated[
        str | None,
        typer.Option(
            "--emit",
            metavar="FORMAT",
            help="Print only the recommendation for another tool: virt-install, virsh, "
            "terraform, kubevirt, openstack (docs/integrations.md).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The VM's name in --emit output (default: the profile's name)."),
    ] = None,
    uri: UriOpt = None,
) -> None:
    """Shadow -> prediction, once, without launching anything."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
    from vmshadow.predict.trackrecord import track_record_text
    from vmshadow.usecases.plan import plan as run_plan
    from vmshadow.usecases.progress import Progress as RunProgress

    # Every input is checked before anything boots: `--load -5` once ran a shadow.
    guarded(lambda: (check.load(load), cpus is None or check.vcpus(cpus)))
    guarded(lambda: check.image_name(image))
    guarded(lambda: check.emit_format(emit_fmt))
    mem = None if memory is None else guarded(lambda: check.parse_memory_mib(memory))
    settings = settings_for(uri)
    if flavours is not None:
        from pathlib import Path

        settings = settings.model_copy(update={"flavours_file": Path(flavours)})
    console = err if json_out or emit_fmt else out
    target = None
    if cpus is not None or mem is not None:
        target = guarded(lambda: Allocation(vcpus=cpus or 1, memory_mib=mem or 512))
    callbacks = RunProgress(stage=lambda m: console.print(f"[dim]-[/] {escape(m)}"))
    doc = guarded(
        lambda: run_plan(
            settings,
            profile,
            load,
            connect=LibvirtHypervisor,
            target=target,
            progress=callbacks,
            image=image,
        )
    )
    if emit_fmt is not None:
        sys.stdout.write(guarded(lambda: _emitted(emit_fmt, doc, name or profile, target)))
        return
    if isinstance(doc.get("prediction"), dict):
        doc["prediction"].setdefault("confidence", plan_confidence(doc))
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    p = doc["prediction"]
    conf = p["confidence"]
    table = Table(
        title=Text(f"plan: {profile} at {load:g} {doc['unit'] or ''}" if load else "plan")
    )
    # The model's margin multiplies its P90 (per resource); the ramp's its one estimate.
    base = p["p90"] or p["median"]
    margins = p["detail"].get("margins") or {}
    table.add_column("resource")
    table.add_column("median need", justify="right")
    if p["p90"]:
        table.add_column("P90", justify="right")
    cover = coverage_text(conf)
    table.add_column("interval" if cover == "—" else f"interval ({cover})", justify="right")
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
        cells.append(interval_text(conf, res))
        cells += [f"{fmt(res, base[res] * m)} (x{m:g})", "no cap" if rec is None else str(rec)]
        table.add_row(*cells)
    out.print(table)
    out.print(f"[dim]{escape(str(p['label']))}[/]")
    for line in confidence_lines(p):
        out.print(line)
    record = track_record_text(p["detail"].get("held_out"))
    if record:
        out.print(f"[dim]{escape(record)}[/]")
    for line in shadow_os_notes(p["detail"]):
        out.print(Text(line))
    app = p["detail"].get("app")
    if isinstance(app, dict) and app.get("achieved"):
        achieved = ", ".join(f"{float(a):g}" for a in app["achieved"] if a is not None)
        out.print(Text(f"the application ({app.get('command')}) achieved per step: {achieved}"))
    t = doc["timings"]
    out.print(
        f"agent ready {t['agent_ready_s']:.1f} s, profile {t['profile_s']:.1f} s, "
        f"total {t['total_s']:.1f} s ({escape(str(doc['accelerator']))}); shadow destroyed"
    )
    if boot_line(t):
        out.print(Text(boot_line(t)))


def plan_confidence(doc: dict[str, Any]) -> dict[str, object]:
    """The prediction's confidence (``domain.confidence``) from the plan's document.

    The document gives the need as its P90 (a quantile model) or its one
    estimate (the ramp), the detail, and the host contention over every phase,
    steal included, which is wider than the predictor's own (the vCPU wait).
    """
    p = doc["prediction"]
    need = p.get("p90") or p["median"]
    detail = dict(p.get("detail") or {})
    if isinstance(doc.get("contention"), dict):
        detail["contention"] = doc["contention"]
    rec = p["recommended"]
    prediction = Prediction(
        method=str(p["method"]),
        label=str(p["label"]),
        history_size=int(p.get("history_size") or 0),
        margin=float(p["margin"]),
        need=Requirement(
            float(need["vcpus"]), float(need["memory_mib"]), float(need.get("iops") or 0)
        ),
        recommended=Allocation(rec["vcpus"], rec["memory_mib"], rec.get("iops")),
        detail=detail,
    )
    return confidence_of(prediction, load=doc.get("load")).as_dict()


def _emitted(fmt: str, doc: dict[str, object], name: str, target: object) -> str:
    from pathlib import Path

    from vmshadow.emit import emit, from_plan

    prediction = doc["prediction"]
    assert isinstance(prediction, dict)
    # A profile given as a file names the VM after the file, not its path.
    vm = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    asked = target.as_dict() if isinstance(target, Allocation) else None
    return emit(fmt, from_plan(vm, prediction["recommended"], requested=asked))
