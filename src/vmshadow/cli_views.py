"""Rich renderings of the API's transition documents, for the client commands.

Everything here takes the API's JSON as it comes (``GET /transitions/{id}``)
and returns something Rich can print; nothing talks to the service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from vmshadow.domain.placement import placement_text
from vmshadow.predict.trackrecord import track_record_text

RESOURCES = (("vcpus", "vCPU"), ("memory_mib", "memory MiB"), ("iops", "IOPS"))

STATE_STYLE = {
    "requested": "dim",
    "shadowing": "cyan",
    "profiling": "cyan",
    "predicted": "bold yellow",
    "launching": "blue",
    "running": "bold green",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
}

# Findings named as cloud right-sizers name them, coloured by risk as krr does.
FINDING_STYLE = {
    "under-provisioned": "bold red",
    "below-margin": "yellow",
    "over-provisioned": "cyan",
    "optimized": "green",
    "no cap": "dim",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def size_text(a: dict[str, Any] | None) -> str:
    """'2 vCPU, 2048 MiB, 120 IOPS' (IOPS left out when uncapped)."""
    if not a:
        return "-"
    text = f"{a['vcpus']} vCPU, {a['memory_mib']} MiB"
    return text + (f", {a['iops']} IOPS" if a.get("iops") else "")


def _num(v: Any) -> str:
    return "-" if v is None else str(v)


def _need(res: str, v: Any) -> str:
    if v is None:
        return "-"
    return f"{float(v):.2f}" if res == "vcpus" else f"{float(v):.0f}"


def findings(doc: dict[str, Any], review: dict[str, Any] | None) -> dict[str, str]:
    """Per resource, what the requested size is against the recommendation.

    Under-provisioned and below-margin come from the service's own review of
    the requested size (so the CLI and the API never disagree about risk);
    the rest is a plain comparison.
    """
    out: dict[str, str] = {}
    for w in (review or {}).get("warnings", []):
        out[w["resource"]] = w["severity"]
    req, rec = doc.get("requested") or {}, doc.get("recommended") or {}
    for res, _label in RESOURCES:
        if res in out:
            continue
        asked, advised = req.get(res), rec.get(res)
        if asked is None or advised is None:
            out[res] = "no cap" if res == "iops" else "-"
        elif asked > advised:
            out[res] = "over-provisioned"
        else:
            out[res] = "optimized"
    return out


def prediction_table(doc: dict[str, Any], review: dict[str, Any] | None) -> Table:
    """Requested vs recommended, one row per resource, with the finding."""
    pred = doc.get("prediction") or {}
    need = pred.get("need") or {}
    margin = pred.get("margin")
    load = f" at load {doc['load']:g}" if doc.get("load") is not None else ""
    table = Table(
        title=f"{doc['kind']} {doc['vm_name']}: profile {doc['profile']}{load}",
        title_justify="left",
    )
    table.add_column("resource")
    table.add_column("requested", justify="right")
    table.add_column("predicted need", justify="right")
    table.add_column(f"recommended (x{margin:g})" if margin else "recommended", justify="right")
    table.add_column("requested size is")
    found = findings(doc, review)
    req, rec = doc.get("requested") or {}, doc.get("recommended") or {}
    for res, label in RESOURCES:
        finding = found.get(res, "-")
        table.add_row(
            label,
            "no cap" if res == "iops" and req.get(res) is None else _num(req.get(res)),
            _need(res, need.get(res)),
            Text(
                "no cap" if res == "iops" and rec.get(res) is None else _num(rec.get(res)),
                style="bold",
            ),
            Text(finding, style=FINDING_STYLE.get(finding, "")),
        )
    return table


def prediction_notes(doc: dict[str, Any]) -> list[str]:
    """How the prediction was made, in the prediction's own words."""
    pred = doc.get("prediction") or {}
    notes = []
    if pred:
        notes.append(
            f"[dim]{pred.get('label')}; history records: {pred.get('history_size', 0)}"
            + (f"; round {pred['round']}" if pred.get("round") else "")
            + "[/]"
        )
        record = track_record_text(pred.get("held_out"))
        if record:
            notes.append(f"[dim]{record}[/]")
    mode = pred.get("resize_mode") or doc.get("resize_mode")
    if doc.get("kind") == "resize" and mode:
        notes.append(f"the resize would be applied: [bold]{mode}[/]")
    return notes


def warning_lines(review: dict[str, Any] | None, prefix: str = "") -> list[str]:
    lines = []
    for w in (review or {}).get("warnings", []):
        style = FINDING_STYLE.get(w["severity"], "yellow")
        lines.append(f"[{style}]warning:[/] {prefix}{w['message']}")
    return lines


def age(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "-"
    then = datetime.fromisoformat(iso)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    s = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def clock(iso: str | None) -> str:
    """Local wall-clock time of an ISO timestamp."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")


def compact_size(a: dict[str, Any] | None) -> str:
    """'2/2048/120' (vCPU / MiB / IOPS, '-' for no cap): narrow enough for a list."""
    if not a:
        return "-"
    return f"{a['vcpus']}/{a['memory_mib']}/{a.get('iops') or '-'}"


def list_table(rows: list[dict[str, Any]]) -> Table:
    """One line per transition, in the manner of ``kubectl get``: no frame, so
    it fits 80 columns and reads well through grep."""
    table = Table(
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        caption="sizes: vCPU/MiB/IOPS ('-': no IOPS cap)",
        caption_justify="left",
        header_style="bold",
    )
    # An ID is copied into the next command, a state is what one looks for: never cut them.
    table.add_column("ID", no_wrap=True, min_width=12)
    table.add_column("VM", overflow="fold")
    table.add_column("KIND")
    table.add_column("PROFILE", overflow="fold")
    table.add_column("STATE", no_wrap=True, min_width=9)
    for name in ("REQUESTED", "RECOMMENDED", "FINAL"):
        table.add_column(name, no_wrap=True)
    table.add_column("AGE", justify="right", no_wrap=True)
    for t in rows:
        load = "" if t.get("load") is None else f"@{t['load']:g}"
        table.add_row(
            t["id"],
            t["vm_name"],
            t["kind"],
            f"{t['profile']}{load}",
            state_text(t["state"]),
            compact_size(t.get("requested")),
            compact_size(t.get("recommended")),
            compact_size(t.get("final")),
            age(t.get("created_at")),
        )
    return table


def detail_table(doc: dict[str, Any]) -> Table:
    """One transition: who, what, when, and how it was decided."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    state = state_text(doc["state"])
    if doc.get("reason"):
        state.append(f" ({doc['reason']})", style="dim")
    load = "" if doc.get("load") is None else f" at load {doc['load']:g}"
    rows: list[tuple[str, str | Text]] = [
        ("transition", f"{doc['id']} ({doc['kind']})"),
        ("VM", doc["vm_name"]),
        ("state", state),
        ("profile", f"{doc['profile']}{load}"),
        ("image", doc.get("image") or "builtin"),
        ("created", f"{doc.get('created_at')} ({age(doc.get('created_at'))} ago)"),
    ]
    if doc.get("scheduled_at"):
        rows.append(("scheduled", doc["scheduled_at"]))
    if where := placement_text(doc.get("placement")):
        rows.append(("placement", where))
    if doc.get("previous"):
        rows.append(("previous size", size_text(doc["previous"])))
    rows.append(("requested", size_text(doc.get("requested"))))
    rows.append(("recommended", size_text(doc.get("recommended"))))
    if doc.get("final"):
        rows.append(("final", size_text(doc["final"])))
    conf = doc.get("confirmation")
    if conf:
        how = conf["decision"] + (", risk acknowledged" if conf.get("risk_acknowledged") else "")
        rows.append(("decision", f"{how} at {conf['at']}"))
        for w in conf.get("warnings") or []:
            rows.append(("warning shown", w["message"]))
    elif doc.get("fast_launch"):
        rows.append(("decision", "fast launch (as soon as predicted)"))
    for k, v in rows:
        table.add_row(k, v)
    return table


def events_table(doc: dict[str, Any]) -> Table:
    table = Table("time", "state", "event", title="timeline", title_justify="left")
    for e in doc.get("events") or []:
        style = {"error": "red", "warning": "yellow"}.get(e["kind"], "")
        table.add_row(
            clock(e["at"]),
            state_text(e["state"]) if e["kind"] == "state" and e.get("state") else Text(""),
            Text(e["message"], style=style),
        )
    return table
