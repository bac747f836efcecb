"""The callbacks a front end (the CLI) gives a use case to show its progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.samples import UsagePoint


@dataclass
class Progress:
    """Callbacks a front end may give to show progress; all optional."""

    stage: Callable[[str], None] = lambda _msg: None
    phase_started: Callable[[PhaseSpec], None] = lambda _spec: None
    phase_done: Callable[[PhaseSpec], None] = lambda _spec: None
    point: Callable[[UsagePoint], None] = lambda _p: None
