"""Decision policies: who decides once a transition's prediction exists.

``manual``: a person confirms, overrides or cancels (the default).
``auto-within:PCT``: confirmed on its own when the first recommendation is
within PCT percent of what was asked for every resource that was asked
(vCPUs, memory, and IOPS when a cap was asked); otherwise a person decides,
told which resource differed and by how much. ``fast``: launched with the
recommendation as soon as it exists (the API's ``fast_launch``).

Every decision a policy makes is an event that names the policy.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from vmshadow.controller.context import Context
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError, ConflictError
from vmshadow.domain.prediction import Prediction, Requirement, StoredPrediction
from vmshadow.domain.transition import Decision, Transition, TransitionState
from vmshadow.store.base import alloc_text

log = logging.getLogger(__name__)
MANUAL, FAST, AUTO_WITHIN = "manual", "fast", "auto-within"
MAX_PCT = 1000.0
CONFIRM, WAIT = "confirm", "wait"


@dataclass(frozen=True)
class Policy:
    kind: str
    pct: float | None = None

    def __str__(self) -> str:
        return f"{AUTO_WITHIN}:{self.pct:g}" if self.kind == AUTO_WITHIN else self.kind


def parse_policy(text: str, field: str = "policy") -> Policy:
    """``manual``, ``fast`` or ``auto-within:PCT`` (0 <= PCT <= 1000); a
    ConfigError naming ``field`` and what is wrong otherwise."""
    t = text.strip().lower()
    if t in (MANUAL, FAST):
        return Policy(t)
    head, sep, pct = t.partition(":")
    if head != AUTO_WITHIN or not sep:
        raise ConfigError(
            field,
            f"{text!r} is not a policy: manual, fast or auto-within:PCT (e.g. auto-within:20)",
        )
    try:
        value = float(pct.rstrip("%"))
    except ValueError as exc:
        raise ConfigError(field, f"{pct!r} in {text!r} is not a percentage") from exc
    if not 0 <= value <= MAX_PCT:
        raise ConfigError(field, f"the percentage must be between 0 and {MAX_PCT:g}, got {pct}")
    return Policy(AUTO_WITHIN, value)


def policy_of(row: Transition) -> Policy:
    """A stored transition's policy (one stored before policies existed: manual or fast)."""
    try:
        p = parse_policy(row.policy or MANUAL)
    except ConfigError:
        p = Policy(MANUAL)
    if p.kind == MANUAL and row.fast_launch:
        return Policy(FAST)
    return p


@dataclass(frozen=True)
class Difference:
    resource: str
    asked: int
    recommended: int | None
    pct: float  # |recommended - asked| / asked, in percent; inf when no cap was recommended

    def text(self) -> str:
        unit = {"vcpus": " vCPU", "memory_mib": " MiB", "iops": " IOPS"}[self.resource]
        rec = "no cap" if self.recommended is None else f"{self.recommended}{unit}"
        return f"{self.resource} {rec} vs {self.asked}{unit} asked ({self.pct:.0f} %)"


def differences(asked: Allocation, recommended: Allocation) -> list[Difference]:
    """How far the recommendation is from the ask, for each resource that was asked."""
    out = []
    pairs: list[tuple[str, int, int | None]] = [
        ("vcpus", asked.vcpus, recommended.vcpus),
        ("memory_mib", asked.memory_mib, recommended.memory_mib),
    ]
    if asked.iops:
        pairs.append(("iops", asked.iops, recommended.iops))
    for name, a, r in pairs:
        pct = float("inf") if r is None else abs(r - a) / a * 100
        out.append(Difference(name, a, r, pct))
    return out


def verdict(policy: Policy, asked: Allocation, recommended: Allocation) -> tuple[str, str]:
    """For auto-within: (CONFIRM or WAIT, the event saying why)."""
    assert policy.kind == AUTO_WITHIN and policy.pct is not None
    diffs = differences(asked, recommended)
    outside = [d for d in diffs if d.pct > policy.pct + 1e-9]
    if not outside:
        return CONFIRM, (
            f"policy {policy}: the recommendation {alloc_text(recommended)} is within "
            f"{policy.pct:g} % of the request for every resource asked "
            f"({'; '.join(d.text() for d in diffs)}): confirming it"
        )
    return WAIT, (
        f"policy {policy}: the recommendation is not within {policy.pct:g} % of the request: "
        f"{'; '.join(d.text() for d in outside)}: waiting for a person to decide"
    )


def on_first_prediction(ctx: Context, row: Transition, p: Prediction) -> None:
    """What the policy makes of the first prediction, recorded once (an event,
    and for auto-within its verdict, which the engine acts on). Refined ones
    (made while ``predicted``) change nothing: a person may be looking."""
    if row.state != TransitionState.PROFILING.value:
        return
    policy = policy_of(row)
    if policy.kind == FAST:
        ctx.store.add_event(
            row.id, "info", f"policy fast: the recommendation {alloc_text(p.recommended)} "
            "is confirmed as soon as it is recorded",
        )  # fmt: skip
    if policy.kind != AUTO_WITHIN or row.policy_verdict is not None:
        return
    asked = Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)
    what, why = verdict(policy, asked, p.recommended)
    ctx.store.update_fields(row.id, policy_verdict=what)
    ctx.store.add_event(row.id, "info", why)


def auto_confirm(ctx: Context, row: Transition) -> bool:
    """Confirm a predicted transition whose auto-within verdict was CONFIRM;
    True when it was confirmed here."""
    if row.policy_verdict != CONFIRM or row.state != TransitionState.PREDICTED.value:
        return False
    pred = ctx.store.latest_prediction(row.id)
    if pred is None:
        return False
    rec = Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops)
    with contextlib.suppress(ConflictError):  # a person decided first
        ctx.store.confirm(
            row.id,
            decision=Decision.PREDICTION,
            allocation=rec,
            prediction_id=pred.id,
            warnings=[],
            risk_acknowledged=False,
            resize_mode=row.resize_mode,
        )
        ctx.store.add_event(
            row.id, "info", f"confirmed automatically by policy {policy_of(row)}: "
            f"{alloc_text(rec)}",
        )  # fmt: skip
        log.info("transition %s: confirmed by policy %s", row.id, policy_of(row))
        return True
    return False


def prediction_of(row: StoredPrediction) -> Prediction:
    """A stored prediction as the domain's ``Prediction`` (an override's review)."""
    need = row.detail.get("need") or {}
    return Prediction(
        method=row.method,
        label=row.label,
        history_size=row.history_size,
        margin=row.margin,
        need=Requirement(
            vcpus=float(need.get("vcpus", 0)),
            memory_mib=float(need.get("memory_mib", 0)),
            iops=float(need.get("iops", 0)),
        ),
        recommended=Allocation(row.rec_vcpus, row.rec_memory_mib, row.rec_iops),
        detail=dict(row.detail),
    )
