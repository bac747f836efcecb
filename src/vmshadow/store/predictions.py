"""Predictions of a transition, newest last (each refinement round adds one)."""

from __future__ import annotations

from sqlalchemy import func, select

from vmshadow.domain.prediction import Prediction, StoredPrediction
from vmshadow.store.base import StoreBase, now, translated
from vmshadow.store.mapping import to_prediction
from vmshadow.store.models import PredictionRow


class PredictionStore(StoreBase):
    @translated
    def add_prediction(self, tid: str, p: Prediction) -> int:
        row = PredictionRow(
            transition_id=tid,
            created_at=now(),
            method=p.method,
            label=p.label,
            history_size=p.history_size,
            margin=p.margin,
            rec_vcpus=p.recommended.vcpus,
            rec_memory_mib=p.recommended.memory_mib,
            rec_iops=p.recommended.iops,
            detail={"need": p.need.as_dict(), **p.detail},
        )
        with self.session() as s, s.begin():
            s.add(row)
            s.flush()
            return row.id

    @translated
    def latest_prediction(self, tid: str) -> StoredPrediction | None:
        q = (
            select(PredictionRow)
            .where(PredictionRow.transition_id == tid)
            .order_by(PredictionRow.id.desc())
            .limit(1)
        )
        with self.session() as s:
            row = s.scalar(q)
            return to_prediction(row) if row is not None else None

    @translated
    def prediction_count(self, tid: str) -> int:
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(PredictionRow)
                    .where(PredictionRow.transition_id == tid)
                )
                or 0
            )
