"""What every part of the store shares: the engine and its sessions, the
clock, and the one place SQLAlchemy's errors become ``StoreError``.

Each public method of the store is wrapped in :func:`translated`, so a caller
(controller, API, CLI) catches ``VmshadowError`` and never needs to import
SQLAlchemy. The message keeps the driver's own first line ("attempt to write
a readonly database", "no such table: samples") and drops the SQL statement
and its parameters, which may carry user input and say nothing to an operator.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import StoreError
from vmshadow.domain.transition import TransitionState
from vmshadow.store.db import session_factory
from vmshadow.store.models import EventRow

P = ParamSpec("P")
R = TypeVar("R")
# Long enough for any driver's first line; a cap because a StoreError's text
# ends up in a transition's reason and in API answers.
_MAX_REASON = 300


def now() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def new_transition_id() -> str:
    return uuid.uuid4().hex[:12]


def row_allocation(
    vcpus: int | None, memory_mib: int | None, iops: int | None
) -> Allocation | None:
    if vcpus is None or memory_mib is None:
        return None
    return Allocation(vcpus=vcpus, memory_mib=memory_mib, iops=iops)


_INSERT_EVENT = insert(EventRow)


def insert_event(
    s: Session | Connection, tid: str, kind: str, state: TransitionState | None, message: str
) -> None:
    """Append one event in the caller's transaction. A plain INSERT, not an ORM
    object: the unit of work's flush cost more than the insert itself, and
    every state change and step writes events."""
    s.execute(
        _INSERT_EVENT,
        {
            "transition_id": tid,
            "at": now(),
            "kind": kind,
            "state": state.value if state else None,
            "message": message,
        },
    )


def alloc_text(a: Allocation) -> str:
    text = f"{a.vcpus} vCPU, {a.memory_mib} MiB"
    return text + (f", {a.iops} IOPS" if a.iops else "")


def store_error(what: str, exc: SQLAlchemyError) -> StoreError:
    """A ``StoreError`` naming the operation and the database's own reason."""
    # DBAPIError wraps the driver's exception; its str() adds the SQL and the
    # parameters, so the driver's message is read from ``orig`` instead.
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    lines = str(cause).strip().splitlines()
    reason = (lines[0] if lines else "") or type(cause).__name__
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 3] + "..."
    return StoreError(f"database error during {what}: {reason}")


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn SQLAlchemy's errors raised by ``fn`` into ``StoreError``.

    No caller relies on a specific SQLAlchemy error (conflicts are decided by
    compare-and-set row counts, not by catching ``IntegrityError``), so all of
    them are translated alike.
    """
    what = fn.__name__.replace("_", " ").strip()

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise store_error(what, exc) from exc

    wrapper.__vmshadow_translated__ = True  # type: ignore[attr-defined]
    return wrapper


class StoreBase:
    """The engine and the session factory that every aggregate's part uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def session(self) -> Session:
        """A new session. Errors raised inside the caller's ``with`` block are
        the caller's to translate: only the store's own methods do it here."""
        return self._sessions()
