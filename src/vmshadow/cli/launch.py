"""The interactive part of ``vmshadow launch`` / ``resize`` / ``attach``.

Follow a transition's live stream while the shadow works, show the
prediction, ask ``Launch with the recommendation? [Y/n/o]``, send the
decision, then follow the launch until the VM runs. Every decision goes
through the API (the service records it with a compare-and-set), so this
module holds no state a crash could lose: ``vmshadow attach ID`` resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.apiclient import ApiClient, ApiError
from vmshadow.cli.progress import Ui, follow
from vmshadow.cli.views import (
    decision_deadline,
    prediction_notes,
    prediction_table,
    size_text,
    warning_lines,
)
from vmshadow.domain.errors import ConfigError, VmshadowError

DECIDE = frozenset({"predicted", "launching", "running"})
LAUNCHED = frozenset({"running", "completed"})
# How often the document is read while the prompt waits: the controller refines
# a prediction every few phases (tens of seconds), so a second is prompt enough.
REFINE_POLL_S = 1.0
ANSWERS = "[Y/n/o] (o = choose your own size)"


class RefinementWatch:
    """While the prompt waits, print each refined prediction as it arrives.

    The prompt blocks on the keyboard, so a thread reads the document; the
    answer then applies to the latest prediction (``confirm`` takes it, and says
    so), which is why the user should see it before answering."""

    def __init__(self, api: ApiClient, tid: str, ui: Ui, doc: dict[str, Any], question: str):
        self.api, self.tid, self.ui, self.question = api, tid, ui, question
        self.seen = _version(doc)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RefinementWatch:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10 * REFINE_POLL_S)

    def _loop(self) -> None:
        while not self.stop.wait(REFINE_POLL_S):
            try:
                doc = self.api.get(self.tid)
            except VmshadowError:
                continue  # the answer's own call will say what is wrong
            if doc["state"] != "predicted" or _version(doc) == self.seen or self.stop.is_set():
                continue
            self.seen = _version(doc)
            round_ = (doc.get("prediction") or {}).get("round")
            which = f" (round {round_ + 1})" if isinstance(round_, int) else ""
            self.ui.print(
                f"\n[yellow]prediction refined{escape(which)}:[/] "
                + escape(f"{size_text(doc.get('recommended'))}; y now takes this one")
            )
            click.echo(f"{self.question} ", nl=False, err=self.ui.to_stderr)  # ask again


def _version(doc: dict[str, Any]) -> tuple[Any, ...]:
    pred = doc.get("prediction") or {}
    return (pred.get("round"), repr(doc.get("recommended")))


# -- the decision -----------------------------------------------------------------------
def drive(api: ApiClient, tid: str, ui: Ui) -> dict[str, Any]:
    """Shadow -> prediction -> decision -> running (or the state it ended in)."""
    doc = follow(api, tid, ui, DECIDE)
    if doc["state"] == "predicted":
        # A decision's answer is the transition's view without its timeline, and
        # a pre-booted VM may already run when it returns: read the whole document.
        decide(api, tid, ui)
        doc = api.get(tid)
    if not doc["terminal"] and doc["state"] not in LAUNCHED:
        doc = follow(api, tid, ui, LAUNCHED)
    return doc


def decide(api: ApiClient, tid: str, ui: Ui) -> dict[str, Any]:
    """Ask until the user confirms, overrides or declines; returns the transition
    as the decision left it (a view: the timeline is not in it)."""
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
        if deadline := decision_deadline(doc):
            ui.print(Text(deadline, style="yellow"))
        question = f"{verb} with the recommendation? {ANSWERS}"
        if ui.yes:
            ui.print("--yes: accepting the recommendation")
            answer = "y"
        else:
            with RefinementWatch(api, tid, ui, doc, question + ":"):
                answer = click.prompt(
                    question,
                    default="y",
                    show_default=False,
                    value_proc=_answer,
                    err=ui.to_stderr,
                )
        if answer == "n":
            api.cancel(tid)
            ui.print(Text(f"declined: transition {tid} cancelled; nothing was launched"))
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
                f"confirmed the latest: {escape(size_text(after.get('final')))}"
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
        ui.print(f"[bold red]error:[/] {escape(str(exc))}")
        return None
    for line in warning_lines(review):
        ui.print(line)
    if review.get("resize_mode"):
        ui.print(f"the resize would be applied: [bold]{escape(str(review['resize_mode']))}[/]")
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
            ui.print(f"[yellow]the prediction changed:[/] {escape(exc.reason)}")
            return None
        raise


def _size(a: dict[str, Any]) -> dict[str, Any]:
    return {"vcpus": a["vcpus"], "memory_mib": a["memory_mib"], "iops": a.get("iops")}


def _answer(text: str) -> str:
    t = text.strip().lower()
    for word in ("yes", "no", "override"):
        if t and word.startswith(t):
            return word[0]
    raise click.UsageError(
        "answer y (launch with the recommendation), n (cancel: nothing is launched) "
        "or o (choose your own size)"
    )


def _click(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def proc(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise click.UsageError(exc.reason) from None

    return proc


def _parse_iops(text: str) -> int | None:
    t = text.strip().lower()
    if t in ("none", "no", "-", ""):
        return None
    if not t.isdigit() or int(t) < 1:
        raise ConfigError("iops", f"{text!r} is not a whole number of IOPS or 'none'")
    return int(t)


_click_memory = _click(lambda t: check.parse_memory_mib(t, "memory"))
_click_iops = _click(_parse_iops)
