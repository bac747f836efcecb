"""The store: the one object callers use to read and write what vmshadow keeps.

``Store`` is assembled from one part per aggregate, each in its own module:

    transitions.py   transitions and confirmations (compare-and-set)
    events.py        each transition's log of events
    samples.py       usage samples of the shadow and of the launched VM
    predictions.py   predictions, newest last
    history.py       history records the predictors train on
    leases.py        one controller drives a transition at a time
    base.py          engine, sessions, clock, and SQLAlchemy -> StoreError
    fleet.py         several controllers on one database (claim, place)

Every public method translates SQLAlchemy's errors into ``StoreError``, so
callers see only the one exception tree of ``domain.errors``.
"""

from __future__ import annotations

from vmshadow.store.base import aware, new_transition_id, now, row_allocation
from vmshadow.store.events import EventStore
from vmshadow.store.history import HistoryStore
from vmshadow.store.leases import LeaseStore
from vmshadow.store.predictions import PredictionStore
from vmshadow.store.samples import SampleStore
from vmshadow.store.transitions import TransitionStore

__all__ = ["Store", "aware", "new_transition_id", "now", "row_allocation"]


class Store(TransitionStore, EventStore, SampleStore, PredictionStore, HistoryStore, LeaseStore):
    """Transitions, events, samples, predictions, history and leases, over one engine."""
