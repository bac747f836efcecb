"""The two clocks a transition runs by: when it is scheduled, and how long its
prediction may wait for a decision.

Both are checked here, once, so the API, the CLI (through the API) and the
controller agree. A ``scheduled_at`` far from now is refused on input: year 1
was once accepted and every controller pass then died on ``OverflowError``
computing the lead time, stalling every other transition.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from statistics import median
from typing import TYPE_CHECKING

from vmshadow.config import ControllerSettings
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.transition import Transition, TransitionState
from vmshadow.store.repository import Store, aware, now

if TYPE_CHECKING:  # the context imports this module's neighbours, never this one
    from vmshadow.controller.context import Context


def _span(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{seconds:g} s"


def check_scheduled_at(
    at: datetime | None, settings: ControllerSettings, now: datetime
) -> datetime | None:
    """``at`` as an aware UTC datetime (the same instant), or a ConfigError naming
    ``scheduled_at`` when it lies outside [now - schedule_past_s, now + schedule_ahead_s].

    A naive datetime is taken as UTC (what the API has always done); an aware one
    with another offset is converted, never relabelled.
    """
    if at is None:
        return None
    try:
        utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (OverflowError, ValueError) as exc:  # year 1 at +01:00 has no UTC instant
        raise ConfigError("scheduled_at", f"{at.isoformat()} is out of range") from exc
    earliest = now - timedelta(seconds=settings.schedule_past_s)
    latest = now + timedelta(seconds=settings.schedule_ahead_s)
    if utc < earliest:
        raise ConfigError(
            "scheduled_at",
            f"{utc.isoformat()} is more than {_span(settings.schedule_past_s)} in the past "
            f"(controller.schedule_past_s)",
        )
    if utc > latest:
        raise ConfigError(
            "scheduled_at",
            f"{utc.isoformat()} is more than {_span(settings.schedule_ahead_s)} ahead "
            f"(controller.schedule_ahead_s)",
        )
    return utc


def decision_deadline(row: Transition, settings: ControllerSettings) -> datetime | None:
    """When an undecided prediction is cancelled; None when no decision is awaited."""
    if row.state != TransitionState.PREDICTED.value or row.fast_launch:
        return None
    since = aware(row.predicted_at) or aware(row.updated_at)
    if since is None:
        return None
    return since + timedelta(seconds=settings.decision_timeout_s)


def decision_timeout_reason(settings: ControllerSettings) -> str:
    return (
        f"no decision within {_span(settings.decision_timeout_s)} of the prediction "
        f"(controller.decision_timeout_s): cancelled to free its capacity"
    )


def lead_time_s(ctx: Context) -> float:
    """How early to start a scheduled transition so the prediction is ready on time."""
    return lead_s(ctx.store, ctx.settings.controller)


def lead_s(store: Store, settings: ControllerSettings) -> float:
    """``lead_time_s`` from the store alone: the web UI tells when a shadow starts by it."""
    recent = store.recent_time_to_prediction()
    if not recent:
        return settings.default_lead_s
    # Half again the typical time, and never less than the slowest recent one.
    return max(median(recent) * 1.5, max(recent))


def due(ctx: Context, row: Transition) -> bool:
    at = aware(row.scheduled_at)
    if at is None:
        return True
    try:
        return now() >= at - timedelta(seconds=lead_time_s(ctx))
    except OverflowError as exc:  # a row from before scheduled_at was bounded (year 1)
        raise ConfigError("scheduled_at", f"{at.isoformat()} is out of range") from exc
