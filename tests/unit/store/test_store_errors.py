"""The store's boundary: a database that refuses or fails surfaces as
``StoreError`` with the operation and the database's reason, never as a raw
SQLAlchemy error (with its SQL and parameters) that no caller catches."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import StoreError, VmshadowError
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.store import fleet
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "v.db"
    migrate(make_engine(f"sqlite:///{path}"))
    return path


def new(store: Store, name: str = "web1") -> str:
    return store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name=name, profile="smoke", requested=Allocation(2, 1024)
    ).id


def read_only(path: Path) -> Store:
    # A real read-only database. chmod would not do: these tests may run as
    # root, whom file modes do not stop.
    return Store(create_engine(f"sqlite:///file:{path}?mode=ro&uri=true"))


def assert_clean(exc: StoreError, operation: str, reason: str) -> None:
    text_ = str(exc)
    assert text_.startswith(f"database error during {operation}: "), text_
    assert reason in text_
    # The statement and its values stay out of the message (they may carry user input).
    assert "[SQL" not in text_ and "parameters" not in text_ and "\n" not in text_
    assert isinstance(exc.__cause__, SQLAlchemyError)
    assert isinstance(exc, VmshadowError)


def test_a_write_to_a_read_only_database_is_a_store_error(db: Path) -> None:
    tid = new(Store(make_engine(f"sqlite:///{db}")))
    store = read_only(db)
    assert store.get(tid).vm_name == "web1"  # reading still works
    with pytest.raises(StoreError) as info:
        store.advance(tid, TransitionState.SHADOWING, "shadowing")
    assert_clean(info.value, "advance", "readonly database")
    with pytest.raises(StoreError) as info:
        new(store, "web2")
    assert_clean(info.value, "create transition", "readonly database")
    with pytest.raises(StoreError):
        fleet.claim(store, [tid], "controller-1", 30)


def test_a_missing_table_is_a_store_error(db: Path) -> None:
    store = Store(make_engine(f"sqlite:///{db}"))
    tid = new(store)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE samples"))
    with pytest.raises(StoreError) as info:
        store.samples(tid)
    assert_clean(info.value, "samples", "no such table: samples")
    point = UsagePoint(0.0, Source.HOST, None, 1.0, 256.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(StoreError):
        store.add_samples(tid, "shadow", 0, [point])
    # Tables still there answer as before.
    assert store.get(tid).id == tid


def test_every_public_method_translates_database_errors() -> None:
    """A method added later without ``@translated`` would let SQLAlchemy's
    errors out again; only ``session()`` hands its errors to its caller."""
    public = {
        name: fn
        for name, fn in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_") and name != "session"
    }
    assert len(public) >= 25  # the store as split from one class; more may come
    bare = [name for name, fn in public.items() if not getattr(fn, "__vmshadow_translated__", 0)]
    assert bare == []
    for name in ("claim", "hold", "holdings", "place", "release_stale_shadows"):
        assert getattr(getattr(fleet, name), "__vmshadow_translated__", False), name
