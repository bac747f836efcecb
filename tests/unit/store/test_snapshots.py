"""The controller's repeated reads (``store.snapshots``): each sees every write,
whoever made it, and maps again only the rows that changed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.store import fleet, snapshots
from vmshadow.store.db import make_engine
from vmshadow.store.repository import Store

S = TransitionState


def other(store: Store) -> Store:
    """Another process's store on the same database (its own engine and snapshots)."""
    return Store(make_engine(str(store.engine.url)))


def new(store: Store, name: str) -> str:
    return store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name=name, profile="smoke", requested=Allocation(2, 1024)
    ).id


@pytest.fixture
def mapped(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the rows the snapshots map, in order."""
    seen: list[str] = []
    to_transition, holding = snapshots.to_transition, snapshots._holding

    def count_t(row: Any) -> Any:
        seen.append(row.id)
        return to_transition(row)

    def count_h(row: Any) -> Any:
        seen.append(row.id)
        return holding(row)

    monkeypatch.setattr(snapshots, "to_transition", count_t)
    monkeypatch.setattr(snapshots, "_holding", count_h)
    return seen


def test_unfinished_maps_only_what_changed_and_sees_every_write(
    store: Store, mapped: list[str]
) -> None:
    a, b, c = (new(store, n) for n in ("a", "b", "c"))
    assert [t.id for t in store.unfinished()] == [a, b, c]  # oldest first
    mapped.clear()
    assert [t.id for t in store.unfinished()] == [a, b, c]
    assert mapped == []  # nothing changed: nothing mapped again

    elsewhere = other(store)
    assert elsewhere.advance(a, S.SHADOWING, "shadowing")
    assert elsewhere.take_lease(b, "ctl-2", 30)  # a lease write bumps no version
    got = {t.id: t for t in store.unfinished()}
    assert sorted(mapped) == sorted([a, b])
    assert got[a].state is S.SHADOWING and got[b].lease_owner == "ctl-2"

    # A write that bumps neither the version nor updated_at is still seen by its
    # state (a hand-made fix, another version's code).
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE transitions SET state = 'failed' WHERE id = :t"), {"t": c})
    assert [t.id for t in store.unfinished()] == [a, b]  # finished: gone
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE transitions SET shadow_live = 1 WHERE id = :t"), {"t": a})
    assert {t.id: t for t in store.unfinished()}[a].shadow_live is True


def test_holdings_book_what_placements_wrote_and_skip_the_unplaced(
    store: Store, mapped: list[str]
) -> None:
    a, b = new(store, "a"), new(store, "b")
    assert fleet.holdings(store) == []  # nothing placed books nothing
    elsewhere = other(store)
    assert elsewhere.update_fields(a, vm_host="h1", shadow_host="h1", shadow_live=True)
    held = fleet.holdings(store)
    assert [(h.transition_id, h.vm_host, h.shadow_host, h.vm_vcpus) for h in held] == [
        (a, "h1", "h1", 2)
    ]
    mapped.clear()
    assert fleet.holdings(store) == held and mapped == []

    assert elsewhere.update_fields(a, final_vcpus=4, shadow_live=False)
    assert elsewhere.update_fields(b, vm_host="h2")
    held = fleet.holdings(store)
    assert sorted(mapped) == sorted([a, b])
    assert [(h.transition_id, h.vm_vcpus, h.shadow_host) for h in held] == [
        (a, 4, None),
        (b, 2, None),
    ]
    # The shadow flag alone, written without a version bump, is seen too.
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE transitions SET shadow_live = 1 WHERE id = :t"), {"t": a})
    assert fleet.holdings(store)[0].shadow_host == "h1"
