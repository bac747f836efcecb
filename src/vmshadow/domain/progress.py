"""How far a shadow's profiling run is, and how long it has left.

One rule for every front end: the CLI's progress line (``cli/progress.py``)
and the web UI's transition page (``web/pages.py``) both feed a ``PhaseClock``
the samples' phase ids and times, so the two never disagree on the time left.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A ramp profile's phase ids are "s<step>-<kind>" (workloads/profiles.py).
STEP_RE = re.compile(r"s(\d+)-")


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
        return where if left is None else f"{where}, {duration_text(left)} left"


def duration_text(s: float) -> str:
    return f"about {s:.0f} s" if s < 90 else f"about {s / 60:.0f} min"


def plan_clock(doc: Mapping[str, Any] | None) -> PhaseClock:
    """The clock of a profile as ``GET /api/v1/profiles`` describes it: smoke's
    phases with their length, a ramp's steps; nothing known for a profile file."""
    doc = doc or {}
    if doc.get("phases"):
        phases = doc["phases"]
        return PhaseClock(
            steps=1, per_step=len(phases), phase_s=float(phases[0].get("duration_s") or 0) or None
        )
    if doc.get("ramp"):
        return PhaseClock(steps=len(doc["ramp"]))
    return PhaseClock()
