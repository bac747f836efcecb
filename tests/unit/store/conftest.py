"""The store's tests share one fixture: a migrated SQLite store in the test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    return Store(engine)
