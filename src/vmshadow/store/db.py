"""Engine, sessions and migrations.

SQLite by default (a file in the data folder, mode 0600: it holds the API's
decisions and warnings), PostgreSQL by URL (``postgresql+psycopg://user@host/db``;
a plain ``postgresql://`` URL is given the psycopg 3 driver, the one installed).
Migrations run at start-up, from the package's own Alembic scripts, so a new
install and an upgrade take the same path; on PostgreSQL several controllers
may start at once, so they take turns through an advisory lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from vmshadow.store.writers import QueuedConnection, queue_writes

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key for migrations: "vmsh" and 1.
MIGRATION_LOCK = 0x766D_7368_0001
# pg_advisory_xact_lock key for creating transitions: "vmsh" and 3.
CREATE_LOCK = 0x766D_7368_0003


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            path = Path(db)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # Create it private before SQLite does, with the umask's mode.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(path, 0o600)
        engine = create_engine(
            url,
            # The API and the controller's threads share the engine.
            # No pre-ping: a local file's connection does not go stale, and the
            # extra SELECT 1 per session showed in the controller's profile.
            connect_args={"check_same_thread": False, "timeout": 30, "factory": QueuedConnection},
        )
        # Writers wait in a queue, not in SQLite's sleeping busy handler (writers.py).
        event.listen(engine, "before_cursor_execute", queue_writes)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (API, SSE) never wait for the controller's writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held to the end of this transaction: a second controller starting
            # now waits, then finds the schema at head.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        if conn.dialect.name == "postgresql":
            conn.execute(text(NOTIFY_FUNCTION))
            for table in ("events", "samples"):
                conn.execute(text(NOTIFY_TRIGGER.format(table=table)))


# Every statement that adds events or samples sends one NOTIFY: the SSE hub,
# the event feed and the controller of each process wake on it instead of
# waiting for their next poll (``ops/changes.py``). Per statement, not per row,
# and PostgreSQL folds equal notifications of one transaction into one.
CHANNEL = "vmshadow_changes"
NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION vmshadow_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END $$
"""
NOTIFY_TRIGGER = """
CREATE OR REPLACE TRIGGER vmshadow_notify_{table} AFTER INSERT ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION vmshadow_notify()
"""


def listen_conninfo(engine: Engine) -> str | None:
    """A libpq URL for a LISTEN connection of its own, or None on SQLite."""
    if not is_postgres(engine):
        return None
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def serialize_creates(s: Session | Connection) -> None:
    """Make the transaction the only one creating transitions until it ends,
    so a count of what exists and the insert it allows are one step.

    Must be the transaction's first statement. SQLite: ``BEGIN IMMEDIATE`` takes
    the database's write lock now (pysqlite would begin a deferred transaction
    only at the INSERT, after the count); other writers wait their turn
    (``writers.py``). PostgreSQL: an advisory lock released at commit, taken by
    creates only, so the controller's writes never wait on it.
    """
    dialect = s.get_bind().dialect if isinstance(s, Session) else s.dialect
    if dialect.name == "sqlite":
        s.execute(text("BEGIN IMMEDIATE"))
    else:
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CREATE_LOCK})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
