"""The interactive part of ``vmshadow launch`` / ``resize`` / ``attach``.

Follow a transition's live stream while the shadow works, show the
prediction, ask ``Launch with the recommendation? [Y/n/o]``, send the
decision, then follow the launch until the VM runs. Every decision goes
through the API (the service records it with a compare-and-set), so this
module holds no state a crash could lose: ``vmshadow attach ID`` resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from vmshadow.cli_views import (
    clock,
    prediction_notes,
    prediction_table,
    size_text,
    state_text,
    warning_lines,
)
from vmshadow.client import ApiClient, ApiError
from vmshadow.domain.errors import ConfigError

LIFECYCLE = ("requested", "shadowing", "profiling", "predicted", "launching", "running")
DECIDE = frozenset({"predicted", "launching", "running"})
LAUNCHED = frozenset({"running", "completed"})
SHADOW_STATES = frozenset({"shadowing", "profiling", "predicted"})
RECONNECT_PAUSE_S = 0.5


@dataclass
class Ui:
    console: Console  # human output: stderr when stdout carries --json
    yes: bool = False  # accept the recommendation without asking
    to_stderr: bool = False  # prompts follow the console

    def print(self, *a: Any) -> None:
        self.console.print(*a)


@dataclass
class _Live:
    """The latest shadow measurements, shown on the progress line."""

    state: str
    phase: str | None = None
    figures: dict[str, float] = field(default_factory=dict)

    def take(self, s: dict[str, Any]) -> None:
        self.phase = s.get("phase_id") or self.phase
        # CPU and IOPS from the host's view (it does not trust the guest), memory
        # from the guest's own (net of page cache) and the balloon's otherwise.
        wanted = {"busy_vcpus": "host", "iops": "host", "mem_used_mib": "guest"}
        for key, source in wanted.items():
            v = s.get(key)
            if v is not None and (s.get("source") == source or key not in self.figures):
                self.figures[key] = float(v)

    def text(self) -> str:
        parts = [f"[bold]{self.state}[/]"]
        if self.phase:
            parts.append(f"phase {self.phase}")
        f = self.figures
        if "busy_vcpus" in f:
            parts.append(f"{f['busy_vcpus']:.2f} vCPU")
        if "mem_used_mib" in f:
            parts.append(f"{f['mem_used_mib']:.0f} MiB")
        if "iops" in f:
            parts.append(f"{f['iops']:.0f} IOPS")
        return "  ".join(parts)


def follow(api: ApiClient, tid: str, ui: Ui, stop: frozenset[str]) -> dict[str, Any]:
    """Show the transition's progress until its state is in ``stop`` or over."""
    doc = api.get(tid)
    if doc["state"] in stop or doc["terminal"]:
        return doc
    seen = max((e["id"] for e in doc.get("events", [])), default=0)
    live = _Live(doc["state"])
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        console=ui.console,
        transient=True,
    )
    with bar:
        task = bar.add_task(live.text(), total=len(LIFECYCLE) - 1, completed=_step(live.state))
        while True:
            with closing(api.stream(tid)) as events:
                for kind, data in events:
                    if kind == "end":
                        break
                    if kind == "sample":
                        # Shadow samples describe the shadow's run; once the VM
                        # launches they are history (the stream replays them).
                        if data.get("target") == "shadow" and live.state in SHADOW_STATES:
                            live.take(data)
                            bar.update(task, description=live.text())
                        continue
                    # The stream replays the timeline from the start: print only
                    # what is new, but take the state from every entry, because
                    # the document read first may hold a state older than its
                    # own event list (two reads), and states only move forward.
                    if data["id"] > seen:
                        seen = data["id"]
                        _print_event(bar.console, data)
                    if data["kind"] == "state" and data.get("state"):
                        if data["state"] != live.state:
                            live.state, live.phase = data["state"], None
                            live.figures.clear()
                        if live.state in stop:
                            break
                    bar.update(task, description=live.text(), completed=_step(live.state))
            doc = api.get(tid)
            if doc["state"] in stop or doc["terminal"]:
                return doc
            time.sleep(RECONNECT_PAUSE_S)  # the stream ended early (service restarted)


def _step(state: str) -> int:
    return LIFECYCLE.index(state) if state in LIFECYCLE else len(LIFECYCLE) - 1


def _print_event(console: Console, e: dict[str, Any]) -> None:
    style = {"error": "red", "warning": "yellow"}.get(e["kind"], "")
    message = Text(e["message"], style=style)
    state = e.get("state") if e["kind"] == "state" else None
    if state and not e["message"].startswith(state):  # "shadowing" needs no label
        message = Text.assemble(state_text(state), " ", message)
    console.print(Text.assemble((clock(e["at"]), "dim"), "  ", message))


# -- the decision -----------------------------------------------------------------------
def drive(api: ApiClient, tid: str, ui: Ui) -> dict[str, Any]:
    """Shadow -> prediction -> decision -> running (or the state it ended in)."""
    doc = follow(api, tid, ui, DECIDE)
    if doc["state"] == "predicted":
        doc = decide(api, tid, ui)
    if not doc["terminal"] and doc["state"] not in LAUNCHED:
        doc = follow(api, tid, ui, LAUNCHED)
    return doc


def decide(api: ApiClient, tid: str, ui: Ui) -> dict[str, Any]:
    """Ask until the user confirms, overrides or declines; returns the new document."""
    verb = "Resize" if api.get(tid)["kind"] == "resize" else "Launch"
    while True:
        doc = api.get(tid)
        if doc["state"] != "predicted":  # decided elsewhere, or refined into a failure
            return doc
        review = _review(api, tid, doc["requested"])
        ui.print(prediction_table(doc, review))
        for line in prediction_notes(doc) + warning_lines(review, "if run as requested: "):
            ui.print(line)
        if doc.get("fast_launch"):
            return doc  # the controller launches it on its own
        if ui.yes:
            ui.print("--yes: accepting the recommendation")
            answer = "y"
        else:
            answer = click.prompt(
                f"{verb} with the recommendation? [Y/n/o]",
                default="y",
                show_default=False,
                value_proc=_answer,
                err=ui.to_stderr,
            )
        if answer == "n":
            api.cancel(tid)
            ui.print(f"declined: transition {tid} cancelled; nothing was launched")
            return api.get(tid)
        if answer == "o":
            done = _override(api, tid, doc, ui, verb)
            if done is not None:
                return done
            continue
        try:
            after = api.confirm(tid)
        except ApiError as exc:
            if exc.status == 409 and api.get(tid)["state"] != "predicted":
                continue  # it moved on meanwhile: the loop reports what happened
            raise
        if after.get("final") != doc["recommended"]:
            ui.print(
                "[yellow]note:[/] the prediction was refined while you decided; "
                f"confirmed the latest: {size_text(after.get('final'))}"
            )
        return after


def _review(api: ApiClient, tid: str, size: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return api.review_override(tid, _size(size))
    except ApiError as exc:
        if exc.status == 409:  # it moved on: the caller sees the new state
            return None
        raise


def _override(
    api: ApiClient, tid: str, doc: dict[str, Any], ui: Ui, verb: str
) -> dict[str, Any] | None:
    """Ask for a size (pre-filled with the recommendation), show its warnings, and
    send it, acknowledging the risk only when the user said so; None to ask again."""
    rec = doc["recommended"]
    err = ui.to_stderr
    vcpus = click.prompt("vCPUs", default=rec["vcpus"], type=click.IntRange(1, 256), err=err)
    memory = click.prompt(
        "memory (MiB, or e.g. 4G)",
        default=str(rec["memory_mib"]),
        value_proc=_click_memory,
        err=err,
    )
    iops = click.prompt(
        "IOPS cap ('none' for no cap)",
        default=str(rec["iops"]) if rec.get("iops") else "none",
        value_proc=_click_iops,
        err=err,
    )
    size = {"vcpus": vcpus, "memory_mib": memory, "iops": iops}
    try:
        review = api.review_override(tid, size)
    except ApiError as exc:
        if exc.status != 422:
            raise
        ui.print(f"[bold red]error:[/] {exc}")
        return None
    for line in warning_lines(review):
        ui.print(line)
    if review.get("resize_mode"):
        ui.print(f"the resize would be applied: [bold]{review['resize_mode']}[/]")
    risky = bool(review.get("needs_acknowledgement"))
    if risky:
        question = (
            f"{size_text(size)} is below the predicted need. {verb} anyway, accepting the risk?"
        )
    else:
        question = f"{verb} with {size_text(size)}?"
    if not click.confirm(question, default=not risky, err=err):
        return None
    try:
        return api.override(tid, size, acknowledge_risk=risky)
    except ApiError as exc:
        # A refined prediction can make a size risky after its review: ask again.
        if exc.status == 409 and exc.field == "acknowledge_risk":
            ui.print(f"[yellow]the prediction changed:[/] {exc.reason}")
            return None
        raise


def _size(a: dict[str, Any]) -> dict[str, Any]:
    return {"vcpus": a["vcpus"], "memory_mib": a["memory_mib"], "iops": a.get("iops")}


def _answer(text: str) -> str:
    t = text.strip().lower()
    for word in ("yes", "no", "override"):
        if t and word.startswith(t):
            return word[0]
    raise click.UsageError("answer y (launch with the recommendation), n (cancel) or o (override)")


def _click(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def proc(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise click.UsageError(exc.reason) from None

    return proc


def parse_memory_mib(text: str, field: str = "--memory") -> int:
    """'4G', '512M', '1.5GiB', '2048' (MiB) -> MiB."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"G": 1024, "M": 1, "T": 1024 * 1024}.get(t[-1:])
    try:
        value = float(t[:-1] if scale else t) * (scale or 1)
    except ValueError:
        raise ConfigError(field, f"{text!r} is not a size like 4G, 512M or 2048") from None
    if value != value or value <= 0:  # NaN or not positive
        raise ConfigError(field, f"{text!r} is not a positive size")
    return int(value)


def _parse_iops(text: str) -> int | None:
    t = text.strip().lower()
    if t in ("none", "no", "-", ""):
        return None
    if not t.isdigit() or int(t) < 1:
        raise ConfigError("iops", f"{text!r} is not a whole number of IOPS or 'none'")
    return int(t)


_click_memory = _click(lambda t: parse_memory_mib(t, "memory"))
_click_iops = _click(_parse_iops)
