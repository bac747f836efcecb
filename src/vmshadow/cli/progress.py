"""Following a transition live, for ``vmshadow launch`` / ``resize`` / ``attach``.

A progress line shows the state, where the shadow's run is (step k of n, the
phase), its live vCPU, memory and IOPS and, once the samples tell how long a
phase takes, an estimate of the time left; timeline entries are printed as
they arrive.
"""

from __future__ import annotations

import re
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

LIFECYCLE = ("requested", "shadowing", "profiling", "predicted", "launching", "running")
SHADOW_STATES = frozenset({"shadowing", "profiling", "predicted"})
RECONNECT_PAUSE_S = 0.5
# A ramp profile's phase ids are "s<step>-<kind>" (workloads/profiles.py).
STEP_RE = re.compile(r"s(\d+)-")


@dataclass
class Ui:
    console: Console  # human output: stderr when stdout carries --json
    yes: bool = False  # accept the recommendation without asking
    to_stderr: bool = False  # prompts follow the console

    def print(self, *a: Any) -> None:
        self.console.print(*a)


@dataclass
class PhaseClock:
    """Step k of n, and the time left, from the samples' phase ids and times.

    ``steps`` is the ramp's length from ``GET /profiles`` (1 for smoke), and
    ``phase_s`` a phase's length where the API says it (smoke's phases); else
    it is measured: the time between the first samples of two phases. The
    controller may end a ramp early (the shadow's memory, or saturation), so
    the time left is at most what the estimate says.
    """

    steps: int | None = None
    phase_s: float | None = None
    per_step: int | None = None  # phases in one step: known for smoke, else learnt
    starts: dict[str, float] = field(default_factory=dict)  # phase id -> first sample's t
    last_t: float = 0.0

    def take(self, phase_id: str | None, t: float | None) -> None:
        if not phase_id or t is None:
            return
        self.starts.setdefault(phase_id, float(t))
        self.last_t = max(self.last_t, float(t))
        if self.per_step is None and self.step_of(phase_id) > 0:
            self.per_step = sum(1 for p in self.starts if self.step_of(p) == 0)

    @staticmethod
    def step_of(phase_id: str) -> int:
        m = STEP_RE.match(phase_id)
        return int(m.group(1)) if m else 0

    def phase_length(self) -> float | None:
        if self.phase_s:
            return self.phase_s
        t = sorted(self.starts.values())
        if len(t) < 2:
            return None
        return (t[-1] - t[0]) / (len(t) - 1)

    def left_s(self) -> float | None:
        length = self.phase_length()
        if not self.starts or length is None or self.steps is None or self.per_step is None:
            return None
        current = max(self.starts, key=lambda p: self.starts[p])
        remaining = self.steps * self.per_step - (len(self.starts) - 1)
        return max(0.0, remaining * length - (self.last_t - self.starts[current]))

    def text(self) -> str:
        if not self.starts:
            return ""
        current = max(self.starts, key=lambda p: self.starts[p])
        k = self.step_of(current) + 1
        if self.steps and self.steps > 1:
            where = f"step {k}/{self.steps} ({current})"
        elif self.per_step:
            where = f"phase {len(self.starts)}/{self.per_step} ({current})"
        else:
            where = f"phase {current}"
        left = self.left_s()
        return where if left is None else f"{where}, {_duration(left)} left"


def _duration(s: float) -> str:
    return f"about {s:.0f} s" if s < 90 else f"about {s / 60:.0f} min"


def plan_clock(api: ApiClient, profile: str) -> PhaseClock:
    """What the API says of the profile's plan (nothing for a profile file)."""
    try:
        known = {p["name"]: p for p in api.profiles() if isinstance(p, dict)}
    except VmshadowError:
        return PhaseClock()  # an older service: step k and the phase, no n
    doc = known.get(profile) or {}
    if doc.get("phases"):
        phases = doc["phases"]
        return PhaseClock(
            steps=1, per_step=len(phases), phase_s=float(phases[0].get("duration_s") or 0) or None
        )
    if doc.get("ramp"):
        return PhaseClock(steps=len(doc["ramp"]))
    return PhaseClock()


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
