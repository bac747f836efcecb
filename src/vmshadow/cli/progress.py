"""Following a transition live, for ``vmshadow launch`` / ``resize`` / ``attach``.

A progress line shows the state, where the shadow's run is (step k of n, the
phase), its live vCPU, memory and IOPS and, once the samples tell how long a
phase takes, an estimate of the time left; timeline entries are printed as
they arrive.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from vmshadow.cli.apiclient import ApiClient
from vmshadow.cli.views import clock, state_text
from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.progress import PhaseClock
from vmshadow.domain.progress import plan_clock as clock_of

LIFECYCLE = ("requested", "shadowing", "profiling", "predicted", "launching", "running")
SHADOW_STATES = frozenset({"shadowing", "profiling", "predicted"})
RECONNECT_PAUSE_S = 0.5


@dataclass
class Ui:
    console: Console  # human output: stderr when stdout carries --json
    yes: bool = False  # accept the recommendation without asking
    to_stderr: bool = False  # prompts follow the console

    def print(self, *a: Any) -> None:
        self.console.print(*a)


def plan_clock(api: ApiClient, profile: str) -> PhaseClock:
    """What the API says of the profile's plan (nothing for a profile file)."""
    try:
        known = {p["name"]: p for p in api.profiles() if isinstance(p, dict)}
    except VmshadowError:
        return PhaseClock()  # an older service: step k and the phase, no n
    return clock_of(known.get(profile))


@dataclass
class _Live:
    """The latest shadow measurements, shown on the progress line."""

    state: str
    clock: PhaseClock = field(default_factory=PhaseClock)
    figures: dict[str, float] = field(default_factory=dict)

    def take(self, s: dict[str, Any]) -> None:
        self.clock.take(s.get("phase_id"), s.get("t"))
        # CPU and IOPS from the host's view (it does not trust the guest), memory
        # from the guest's own (net of page cache) and the balloon's otherwise.
        wanted = {"busy_vcpus": "host", "iops": "host", "mem_used_mib": "guest"}
        for key, source in wanted.items():
            v = s.get(key)
            if v is not None and (s.get("source") == source or key not in self.figures):
                self.figures[key] = float(v)

    def text(self) -> str:
        # The progress line is markup: the state and phase come from the API.
        parts = [f"[bold]{escape(self.state)}[/]"]
        if self.state == "profiling" and (where := self.clock.text()):
            parts.append(escape(where))
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
    live = _Live(doc["state"], plan_clock(api, doc["profile"]))
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
                            live.state = data["state"]
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
