"""Fixtures of the integration tests: a real PostgreSQL server, started once, and
the test driver's connection the full-VM and VM-store tests share (a file's
own ``hv`` wins)."""

from __future__ import annotations

from collections.abc import Iterator

import managed_vms as mv
import pytest

from pgserver import PgServer, pg_server
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.create_database()


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor("test:///default") as conn:
        yield conn
        mv.remove_all(conn)
        for pool in conn._conn.listAllStoragePools(0):
            if pool.name().startswith("vms-"):
                pool.destroy()
                pool.undefine()
