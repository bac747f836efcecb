"""Usage samples of a transition: the shadow's, then the launched VM's."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select

from vmshadow.domain.samples import StoredSample, UsagePoint
from vmshadow.store.base import StoreBase, translated
from vmshadow.store.mapping import to_sample
from vmshadow.store.models import SampleRow


class SampleStore(StoreBase):
    @translated
    def add_samples(self, tid: str, target: str, run: int, points: Sequence[UsagePoint]) -> None:
        if not points:
            return
        # One INSERT of many rows, not ORM objects: the shadow's and the VM's
        # samples are most of what the controller writes.
        with self.engine.begin() as c:
            c.execute(
                insert(SampleRow),
                [
                    {
                        "transition_id": tid,
                        "target": target,
                        "run": run,
                        "t": p.t,
                        "source": p.source.value,
                        "phase_id": p.phase_id,
                        "busy_vcpus": p.busy_vcpus,
                        "mem_used_mib": p.mem_used_mib,
                        "read_iops": p.read_iops,
                        "write_iops": p.write_iops,
                        "read_bps": p.read_bps,
                        "write_bps": p.write_bps,
                        "forks_ps": p.forks_ps,
                        "faults_ps": p.faults_ps,
                    }
                    for p in points
                ],
            )

    @translated
    def samples(
        self, tid: str, *, after: int = 0, target: str | None = None, limit: int = 5000
    ) -> list[StoredSample]:
        q = (
            select(SampleRow)
            .where(SampleRow.transition_id == tid, SampleRow.id > after)
            .order_by(SampleRow.id)
            .limit(limit)
        )
        if target is not None:
            q = q.where(SampleRow.target == target)
        with self.session() as s:
            return [to_sample(r) for r in s.scalars(q)]
