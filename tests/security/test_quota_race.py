"""The quota of unfinished transitions holds under concurrent creates (issue 14,
item 6): 200 creates at once against a quota of 100 once left 104-132 unfinished,
because the count and the insert were two transactions. Through the real service
(libvirt's test driver) on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgserver import PgServer, pg_server
from vmshadow.config import load_settings
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError
from vmshadow.domain.transition import TransitionKind
from vmshadow.store.db import make_engine, migrate, sqlite_url
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.security, pytest.mark.libvirt, pytest.mark.subprocess]

CREATES = 200
QUOTA = 100


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "vmshadow.db")
    server: PgServer = request.getfixturevalue("postgres")
    return server.create_database()


def test_concurrent_creates_never_exceed_the_quota(tmp_path: Path, db_url: str) -> None:
    settings = load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("libvirt_uri",): "test:///default",
            ("database_url",): db_url,
            ("quotas", "max_active_transitions"): QUOTA,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    service = TransitionService(settings, store)
    go = threading.Barrier(CREATES)
    created: list[str] = []
    refused: list[str] = []
    other: list[BaseException] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        go.wait()
        try:
            row = service.create(
                NewTransition(
                    kind=TransitionKind.LAUNCH,
                    vm_name=f"race{n}",
                    profile="smoke",
                    requested=Allocation(1, 512),
                )
            )
        except ConflictError as exc:
            with lock:
                refused.append(str(exc))
        except BaseException as exc:  # anything else is a finding too: keep it
            with lock:
                other.append(exc)
        else:
            with lock:
                created.append(row.id)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(CREATES)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert other == []
        assert store.count_unfinished() == len(created)
        assert len(created) == QUOTA, f"{len(created)} created against a quota of {QUOTA}"
        assert len(refused) == CREATES - QUOTA
        assert all(f"the quota is {QUOTA}" in r for r in refused)
    finally:
        service.pool.close()
        engine.dispose()
