"""History records: what each finished transition (or imported run) observed,
the data the predictors train on."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, select

from vmshadow.store.base import StoreBase, translated
from vmshadow.store.models import HistoryRow


class HistoryStore(StoreBase):
    @translated
    def add_history(self, row: HistoryRow) -> None:
        with self.session() as s, s.begin():
            exists = (
                row.transition_id is not None
                and s.scalar(
                    select(HistoryRow.id).where(HistoryRow.transition_id == row.transition_id)
                )
                is not None
            )
            if not exists:  # a resumed controller may finish the same window twice
                s.add(row)

    @translated
    def history(self, limit: int = 1000) -> list[HistoryRow]:
        with self.session() as s:
            return list(s.scalars(select(HistoryRow).order_by(HistoryRow.id.desc()).limit(limit)))

    @translated
    def replace_history(self, source: str, rows: Iterable[HistoryRow]) -> tuple[int, int]:
        """Put ``rows`` in place of every record from ``source``, in one transaction,
        so that importing the same runs again never doubles them.
        Returns (removed, added)."""
        with self.session() as s, s.begin():
            removed = s.execute(delete(HistoryRow).where(HistoryRow.source == source)).rowcount
            added = 0
            for row in rows:
                row.source = source
                s.add(row)
                added += 1
        return int(removed or 0), added

    @translated
    def all_history(self) -> list[HistoryRow]:
        """Every history record, oldest first (what a model trains on)."""
        with self.session() as s:
            return list(s.scalars(select(HistoryRow).order_by(HistoryRow.id)))

    @translated
    def history_count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(HistoryRow)) or 0)
