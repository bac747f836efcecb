"""Leases: one controller drives a transition at a time.

Claiming many at once, and renewing, are in ``store.fleet``; here one
transition's lease is taken and given back (by the sweep, and by a worker
when it stops driving).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update

from vmshadow.store.base import StoreBase, now, translated
from vmshadow.store.models import TransitionRow


class LeaseStore(StoreBase):
    @translated
    def take_lease(self, tid: str, owner: str, seconds: float) -> bool:
        t = now()
        with self.session() as s, s.begin():
            done = s.execute(
                update(TransitionRow)
                .where(
                    TransitionRow.id == tid,
                    or_(
                        TransitionRow.lease_owner.is_(None),
                        TransitionRow.lease_owner == owner,
                        TransitionRow.lease_until < t,
                    ),
                )
                .values(lease_owner=owner, lease_until=t + timedelta(seconds=seconds))
            )
            return done.rowcount == 1

    @translated
    def release_lease(self, tid: str, owner: str) -> None:
        with self.session() as s, s.begin():
            s.execute(
                update(TransitionRow)
                .where(TransitionRow.id == tid, TransitionRow.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
