"""History records: what each finished transition (or imported run) observed,
the data the predictors train on, and the data sets they were imported from.

An imported data set is a *source*: a name (the key of its rows), where it was
read and a digest of its content. Importing replaces one source's rows and
nothing else, in one transaction, so a second data set adds to the first and
the same data set imported again replaces itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select

from vmshadow.domain.history import HistoryRecord, LaunchRecord, StoredHistory
from vmshadow.store.base import StoreBase, aware, now, translated
from vmshadow.store.mapping import history_row, launch_row, to_history
from vmshadow.store.models import HistoryRow, HistorySourceRow


@dataclass(frozen=True)
class SourceInfo:
    """A source as ``history ls`` shows it. Sources recorded by the controller
    ("vmshadow") or imported before sources were kept have no kind, location or
    digest, and their imported_at is their oldest record's time."""

    name: str
    records: int
    imported_at: datetime | None
    kind: str | None = None
    location: str | None = None
    digest: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.name,
            "records": self.records,
            "imported_at": self.imported_at.isoformat() if self.imported_at else None,
            "kind": self.kind,
            "location": self.location,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class NewSource:
    name: str
    kind: str
    location: str | None
    digest: str | None
    imported_at: datetime


class HistoryStore(StoreBase):
    @translated
    def add_history(self, launch: LaunchRecord) -> None:
        taken = select(HistoryRow.id).where(HistoryRow.transition_id == launch.transition_id)
        with self.session() as s, s.begin():
            if s.scalar(taken) is None:  # a resumed controller may finish a window twice
                s.add(launch_row(launch, now()))

    @translated
    def history(self, limit: int = 1000) -> list[StoredHistory]:
        q = select(HistoryRow).order_by(HistoryRow.id.desc()).limit(limit)
        with self.session() as s:
            return [to_history(r) for r in s.scalars(q)]

    @translated
    def replace_history(self, source: str, records: Iterable[HistoryRecord]) -> tuple[int, int]:
        """Put ``records`` in place of every record from ``source``, in one
        transaction, so that importing the same runs again never doubles them.
        Returns (removed, added)."""
        with self.session() as s, s.begin():
            removed = s.execute(delete(HistoryRow).where(HistoryRow.source == source)).rowcount
            added, at = 0, now()
            for record in records:
                s.add(history_row(record, source, at))
                added += 1
        return int(removed or 0), added

    @translated
    def import_source(
        self, source: NewSource, records: Iterable[HistoryRecord], replaces: Sequence[str] = ()
    ) -> tuple[int, int]:
        """Record ``source`` with ``records`` in place of its earlier import and of the
        sources named in ``replaces`` (the same data set under an older name), in
        one transaction. Returns (removed, added)."""
        names = {source.name, *replaces}
        with self.session() as s, s.begin():
            removed = s.execute(delete(HistoryRow).where(HistoryRow.source.in_(names))).rowcount
            s.execute(delete(HistorySourceRow).where(HistorySourceRow.name.in_(names)))
            s.add(
                HistorySourceRow(
                    name=source.name,
                    kind=source.kind,
                    location=source.location,
                    digest=source.digest,
                    imported_at=source.imported_at,
                )
            )
            added = 0
            for record in records:
                s.add(history_row(record, source.name, source.imported_at))
                added += 1
        return int(removed or 0), added

    @translated
    def same_sources(self, location: str | None, digest: str | None) -> list[str]:
        """Sources imported from this location or with this content."""
        conds = []
        if location:
            conds.append(HistorySourceRow.location == location)
        if digest:
            conds.append(HistorySourceRow.digest == digest)
        if not conds:
            return []
        with self.session() as s:
            return sorted(s.scalars(select(HistorySourceRow.name).where(or_(*conds))))

    @translated
    def history_sources(self) -> list[SourceInfo]:
        """Every source with records or registered, by name."""
        with self.session() as s:
            counts = {
                name: (int(n), first)
                for name, n, first in s.execute(
                    select(
                        HistoryRow.source, func.count(), func.min(HistoryRow.created_at)
                    ).group_by(HistoryRow.source)
                )
            }
            known = {r.name: r for r in s.scalars(select(HistorySourceRow))}
        out = []
        for name in sorted(set(counts) | set(known)):
            n, first = counts.get(name, (0, None))
            reg = known.get(name)
            out.append(
                SourceInfo(
                    name=name,
                    records=n,
                    imported_at=aware(reg.imported_at if reg else first),
                    kind=reg.kind if reg else None,
                    location=reg.location if reg else None,
                    digest=reg.digest if reg else None,
                )
            )
        return out

    @translated
    def remove_source(self, name: str) -> int | None:
        """Delete one source's records (and its registration); None when there is
        no such source, else how many records went."""
        with self.session() as s, s.begin():
            known = s.get(HistorySourceRow, name) is not None
            removed = int(
                s.execute(delete(HistoryRow).where(HistoryRow.source == name)).rowcount or 0
            )
            if known:
                s.execute(delete(HistorySourceRow).where(HistorySourceRow.name == name))
        return removed if known or removed else None

    @translated
    def all_history(self, sources: Sequence[str] | None = None) -> list[StoredHistory]:
        """Every history record (of these sources, when given), oldest first (what a
        model trains on)."""
        q = select(HistoryRow).order_by(HistoryRow.id)
        if sources is not None:
            q = q.where(HistoryRow.source.in_(list(sources)))
        with self.session() as s:
            return [to_history(r) for r in s.scalars(q)]

    @translated
    def history_count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(HistoryRow)) or 0)
