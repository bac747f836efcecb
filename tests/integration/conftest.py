"""Fixtures of the integration tests: a real PostgreSQL server, started once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgserver import PgServer, pg_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.create_database()
