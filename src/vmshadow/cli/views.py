"""Rich renderings of the API's transition documents, for the client commands.

Everything here takes the API's JSON as it comes (``GET /transitions/{id}``)
and returns something Rich can print; nothing talks to the service.

Text from the API (names, paths, reasons, messages) is never Rich markup: it
goes out as ``Text`` or through ``escape`` (an image ``/tmp/[/oops]`` crashed
``vmshadow show`` with ``MarkupError``; ``[blink red]`` restyled a path).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmshadow.domain.confidence import contention_text, coverage_text, interval_text, risk_text
from vmshadow.domain.placement import placement_text
from vmshadow.domain.prediction import shadow_os_notes
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
        title=Text(f"{doc['kind']} {doc['vm_name']}: profile {doc['profile']}{load}"),
        title_justify="left",
    )
    table.add_column("resource")
    table.add_column("requested", justify="right")
    table.add_column("predicted need", justify="right")
    table.add_column(_interval_header(pred.get("confidence")), justify="right")
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
            interval_text(pred.get("confidence"), res),
            Text(
                "no cap" if res == "iops" and rec.get(res) is None else _num(rec.get(res)),
                style="bold",
            ),
            Text(finding, style=FINDING_STYLE.get(finding, "")),
        )
    return table


def _interval_header(conf: dict[str, Any] | None) -> str:
    """'interval (90 %)': the share of cases the interval is meant to cover, when known."""
    cover = coverage_text(conf)
    return "interval" if cover == "—" else f"interval ({cover})"


RISK_STYLE = ("green", "green", "yellow", "bold red", "bold red")  # by level, 0 to 4


def confidence_lines(pred: dict[str, Any]) -> list[str]:
    """The risk level with its drivers, then the history and the host contention
    behind the prediction (Rich markup; the API's words escaped)."""
    conf = pred.get("confidence")
    if not isinstance(conf, dict):
        # A service from before confidence existed: what it does say.
        return [
            "[dim]"
            + escape(
                f"history records: {pred.get('history_size', 0)}; "
                "confidence: not reported by the service"
            )
            + "[/]"
        ]
    risk = conf.get("risk")
    style = RISK_STYLE[risk] if isinstance(risk, int) and 0 <= risk < len(RISK_STYLE) else ""
    drivers = [str(d) for d in conf.get("drivers") or []]
    why = "; ".join(drivers) if drivers else "nothing raises it"
    head = f"[{style}]{escape(risk_text(conf))}[/]" if style else escape(risk_text(conf))
    return [
        f"{head}: {escape(why)}",
        "[dim]"
        + escape(
            f"history records: {conf.get('history_count', '-')}; host contention during "
            f"the shadow run: {contention_text(conf)}"
        )
        + "[/]",
    ]


def prediction_notes(doc: dict[str, Any]) -> list[str]:
    """How the prediction was made, in the prediction's own words, and how sure it is."""
    pred = doc.get("prediction") or {}
    notes = []
    if pred:
        line = f"{pred.get('label')}" + (f"; round {pred['round']}" if pred.get("round") else "")
        notes.append(f"[dim]{escape(line)}[/]")
        notes += confidence_lines(pred)
        record = track_record_text(pred.get("held_out"))
        if record:
            notes.append(f"[dim]{escape(record)}[/]")
        for line in shadow_os_notes(_os_detail(pred)):
            # The built-in OS standing in for the user's is worth their attention.
            style = "yellow" if line.startswith("The shadow ran vmshadow") else "dim"
            notes.append(f"[{style}]{escape(line)}[/]")
    mode = pred.get("resize_mode") or doc.get("resize_mode")
    if doc.get("kind") == "resize" and mode:
        notes.append(f"the resize would be applied: [bold]{escape(str(mode))}[/]")
    return notes


def _os_detail(pred: dict[str, Any]) -> dict[str, Any]:
    """The shadow's OS as the prediction document carries it: top-level keys,
    or its ``detail`` where a document has one."""
    keys = ("shadow_os", "os_idle", "raised_to_os_idle")
    inner = pred.get("detail")
    detail: dict[str, Any] = inner if isinstance(inner, dict) else {}
    return {k: pred.get(k, detail.get(k)) for k in keys if k in pred or k in detail}


def warning_lines(review: dict[str, Any] | None, prefix: str = "") -> list[str]:
    lines = []
    for w in (review or {}).get("warnings", []):
        style = FINDING_STYLE.get(w["severity"], "yellow")
        lines.append(f"[{style}]warning:[/] {escape(prefix + str(w['message']))}")
    return lines


def age(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "-"
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return "?"
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
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except (TypeError, ValueError):
        return "?"


def decision_deadline(doc: dict[str, Any], now: datetime | None = None) -> str | None:
    """'decide by 16:05 (local time), or it is cancelled' for an undecided
    prediction whose decision times out; None when the API gives no deadline
    (older services) or one that does not parse."""
    iso = doc.get("decision_expires_at")
    if doc.get("state") != "predicted" or not isinstance(iso, str):
        return None
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # the API's times are UTC
    local = at.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    # The default timeout is a day: HH:MM alone would not say which day.
    day = "" if local.date() == today else local.strftime(" on %a %d %b")
    return f"decide by {local:%H:%M}{day} (local time), or it is cancelled"


def compact_size(a: dict[str, Any] | None) -> str:
    """'2/2048/120' (vCPU / MiB / IOPS, '-' for no cap): narrow enough for a list."""
    if not a:
        return "-"
    return f"{a['vcpus']}/{a['memory_mib']}/{a.get('iops') or '-'}"


LIST_COLUMNS = ("ID", "VM", "KIND", "PROFILE", "STATE", "REQUESTED", "RECOMMENDED", "FINAL", "AGE")
LIST_LEGEND = "sizes: vCPU/MiB/IOPS ('-': no IOPS cap)"


def list_cells(t: dict[str, Any]) -> list[str]:
    """One transition's cells, in ``LIST_COLUMNS`` order."""
    load = "" if t.get("load") is None else f"@{t['load']:g}"
    return [
        str(t["id"]),
        str(t["vm_name"]),
        str(t["kind"]),
        f"{t['profile']}{load}",
        str(t["state"]),
        compact_size(t.get("requested")),
        compact_size(t.get("recommended")),
        compact_size(t.get("final")),
        age(t.get("created_at")),
    ]


def plain_list(rows: list[dict[str, Any]]) -> str:
    """Header once, then one tab-separated line per transition (for pipes and files)."""

    def clean(cell: str) -> str:
        # A tab or newline inside a cell would split a row: one row stays one line.
        return " ".join(cell.split()) if any(c in cell for c in "\t\r\n") else cell

    lines = ["\t".join(LIST_COLUMNS)]
    lines += ["\t".join(clean(c) for c in list_cells(t)) for t in rows]
    return "\n".join(lines) + "\n"


def list_table(rows: list[dict[str, Any]]) -> Table:
    """One line per transition, in the manner of ``kubectl get``: no frame, so
    it fits 80 columns; for a terminal (``plain_list`` is for pipes)."""
    table = Table(
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        caption=LIST_LEGEND,
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
        cells = list_cells(t)
        table.add_row(
            *(Text(c) for c in cells[:4]),
            state_text(cells[4]),
            *(Text(c) for c in cells[5:8]),
            cells[8],
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
    if deadline := decision_deadline(doc):
        rows.append(("deadline", Text(deadline, style="yellow")))
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
        table.add_row(k, v if isinstance(v, Text) else Text(str(v)))
    return table


def events_table(doc: dict[str, Any]) -> Table:
    table = Table("time", "state", "event", title="timeline", title_justify="left")
    for e in doc.get("events") or []:
        style = {"error": "red", "warning": "yellow"}.get(e["kind"], "")
        table.add_row(
            Text(clock(e["at"])),
            state_text(e["state"]) if e["kind"] == "state" and e.get("state") else Text(""),
            Text(e["message"], style=style),
        )
    return table
