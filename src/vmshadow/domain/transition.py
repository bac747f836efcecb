"""A transition: one VM's way from "please launch (or resize) this" to running.

The lifecycle is an enum plus a table of legal edges, in the manner of httpx's
``ClientState``: every change goes through :func:`check_edge`, which refuses
an illegal one in plain words. Persisting a state before acting on it (the
controller's rule) is what makes a crash in any state recoverable.

    requested -> shadowing -> profiling -> predicted -> launching -> running -> completed
        \\-----------\\------------\\-----------\\-----------\\-----------> failed | cancelled
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmshadow.domain.errors import VmshadowError


class TransitionState(enum.StrEnum):
    REQUESTED = "requested"
    SHADOWING = "shadowing"
    PROFILING = "profiling"
    PREDICTED = "predicted"
    LAUNCHING = "launching"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """States the controller drives on its own (no user input awaited)."""
        return self in {
            TransitionState.REQUESTED,
            TransitionState.SHADOWING,
            TransitionState.PROFILING,
            TransitionState.LAUNCHING,
            TransitionState.RUNNING,
        }


TERMINAL = frozenset({TransitionState.COMPLETED, TransitionState.FAILED, TransitionState.CANCELLED})

S = TransitionState
_FORWARD: dict[TransitionState, frozenset[TransitionState]] = {
    S.REQUESTED: frozenset({S.SHADOWING}),
    S.SHADOWING: frozenset({S.PROFILING}),
    S.PROFILING: frozenset({S.PREDICTED}),
    # Refinement rounds while the user decides stay in predicted: the
    # prediction changes, the question to the user does not.
    S.PREDICTED: frozenset({S.LAUNCHING}),
    S.LAUNCHING: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.COMPLETED}),
}
# Any state that is not over yet may fail or be cancelled. A running VM that
# the user cancels keeps running: cancel then only ends the observation.
LEGAL_EDGES: dict[TransitionState, frozenset[TransitionState]] = {
    state: (_FORWARD.get(state, frozenset()) | {S.FAILED, S.CANCELLED})
    if not state.terminal
    else frozenset()
    for state in TransitionState
}


class IllegalTransition(VmshadowError):
    """A state change the lifecycle does not allow (a programming or race error)."""

    def __init__(self, current: TransitionState, wanted: TransitionState) -> None:
        if current.terminal:
            why = f"it is already {current.value}"
        else:
            allowed = ", ".join(sorted(s.value for s in LEGAL_EDGES[current]))
            why = f"from {current.value} it can only become {allowed}"
        super().__init__(f"cannot move a transition from {current.value} to {wanted.value}: {why}")
        self.current = current
        self.wanted = wanted


def check_edge(current: TransitionState, wanted: TransitionState) -> None:
    if wanted not in LEGAL_EDGES[current]:
        raise IllegalTransition(current, wanted)


class TransitionKind(enum.StrEnum):
    LAUNCH = "launch"
    RESIZE = "resize"


class Decision(enum.StrEnum):
    """How the user settled the allocation."""

    PREDICTION = "prediction"  # confirmed the recommendation
    OVERRIDE = "override"  # chose their own allocation
    FAST_LAUNCH = "fast_launch"  # launch with the recommendation as soon as it exists


@dataclass(frozen=True)
class Transition:
    """One transition as the store read it (``store.mapping.to_transition``).

    The fields mirror the store's columns by name, so code that read a row reads
    this unchanged; state, kind and decision are the enums rather than their
    text. Times are timezone-aware UTC (SQLite hands back naive ones).
    """

    id: str
    kind: TransitionKind
    vm_name: str
    profile: str
    image: str
    load: float | None
    req_vcpus: int
    req_memory_mib: int
    req_iops: int | None
    scheduled_at: datetime | None
    fast_launch: bool
    state: TransitionState
    reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    # What this transition made in libvirt, so cleanup knows what is its own.
    vm_defined: bool
    vm_started: bool
    previous_vcpus: int | None
    previous_memory_mib: int | None
    final_vcpus: int | None
    final_memory_mib: int | None
    final_iops: int | None
    decision: Decision | None
    resize_mode: str | None
    shadow_started_at: datetime | None
    predicted_at: datetime | None
    running_since: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    shadow_host: str | None
    shadow_live: bool
    vm_host: str | None
    placement: str | None
    # A store image's VM setup (``domain.vm.GuestSetup.as_dict``); None for builtin.
    guest: dict[str, Any] | None
    policy: str
    policy_verdict: str | None
    # Set on a request found on a libvirt domain (``controller.detection``).
    origin: str | None
    domain_uuid: str | None
    adopted: dict[str, Any] | None
    detect_key: str | None


@dataclass(frozen=True)
class StoredEvent:
    """One entry of a transition's log as the store read it (``Store.events``).

    Kind and state stay text: the feed, the streams and the document hand
    them on as they were written, and kind is open (state, info, warning,
    error). ``at`` is timezone-aware UTC.
    """

    id: int  # the log's order, which streams and the feed page by
    transition_id: str
    at: datetime
    kind: str
    state: str | None
    message: str


@dataclass(frozen=True)
class StoredConfirmation:
    """The user's decision as the store read it (``Store.confirmation``), with
    the warnings they were shown."""

    id: int
    transition_id: str
    at: datetime  # timezone-aware UTC
    decision: Decision
    prediction_id: int | None
    vcpus: int
    memory_mib: int
    iops: int | None
    risk_acknowledged: bool
    warnings: list[dict[str, Any]]
