"""SQLite's writers queue on ``<database>-writer`` (store/writers.py): the lock is
held exactly from a transaction's first write to its end, on every path out."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from vmshadow.store.db import make_engine, serialize_creates
from vmshadow.store.writers import QueuedConnection, writer_lock_path


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with eng.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
    yield eng
    eng.dispose()


def is_taken(db: Path) -> bool:
    """Whether some connection holds the writer lock (asked from a fresh open)."""
    fd = os.open(writer_lock_path(str(db)), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_write_holds_the_lock_until_its_commit(engine: Engine, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with engine.begin() as c:
        c.execute(text("SELECT count(*) FROM t"))
        assert not is_taken(db)  # a read queues for nothing
        c.execute(text("INSERT INTO t VALUES (1)"))
        assert is_taken(db)
        c.execute(text("UPDATE t SET x = 2"))  # the same turn, not a second wait
    assert not is_taken(db)


def test_a_failed_transaction_gives_its_turn_back(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("a step failed mid-write")
    assert not is_taken(tmp_path / "w.db")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_begin_immediate_queues_before_it_takes_sqlites_lock(
    engine: Engine, tmp_path: Path
) -> None:
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():
        serialize_creates(s)  # the creates' BEGIN IMMEDIATE
        assert is_taken(tmp_path / "w.db")
    assert not is_taken(tmp_path / "w.db")


def test_closing_a_connection_mid_write_frees_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "raw.db"
    conn = sqlite3.connect(db, factory=QueuedConnection)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.begin_write()  # type: ignore[attr-defined]
    conn.execute("INSERT INTO t VALUES (1)")
    assert is_taken(db)
    conn.close()
    assert not is_taken(db)


def test_a_second_writer_waits_for_the_first_and_both_land(engine: Engine) -> None:
    first_wrote, second_done = threading.Event(), threading.Event()
    release = threading.Event()

    def first() -> None:
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (1)"))
            first_wrote.set()
            release.wait(10)

    def second() -> None:
        first_wrote.wait(10)
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (2)"))
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert first_wrote.wait(10)
    assert not second_done.wait(0.3)  # its turn comes after the first's commit
    release.set()
    for t in threads:
        t.join(10)
    assert second_done.is_set()
    with engine.connect() as c:
        assert [r[0] for r in c.execute(text("SELECT x FROM t ORDER BY x"))] == [1, 2]


@pytest.mark.subprocess
def test_a_writer_killed_mid_write_leaves_no_lock(engine: Engine, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sqlalchemy import text;"
            "from vmshadow.store.db import make_engine;"
            f"e = make_engine('sqlite:///{db}'); c = e.connect();"
            "c.execute(text('INSERT INTO t VALUES (9)')); print('wrote', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "wrote"
        assert is_taken(db)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
    assert not is_taken(db)
    with engine.begin() as c:  # and SQLite's own lock went with the process
        c.execute(text("INSERT INTO t VALUES (1)"))
    with engine.connect() as c:
        assert [r[0] for r in c.execute(text("SELECT x FROM t"))] == [1]


def test_the_lock_file_is_private_and_beside_the_database(engine: Engine, tmp_path: Path) -> None:
    lock = Path(writer_lock_path(str(tmp_path / "w.db")))
    assert lock.parent == tmp_path
    assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0


def test_an_in_memory_database_is_not_queued() -> None:
    eng = make_engine("sqlite:///:memory:")
    with eng.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
        c.execute(text("INSERT INTO t VALUES (1)"))
        assert c.execute(text("SELECT x FROM t")).scalar() == 1
    assert not Path(writer_lock_path(":memory:")).exists()


def test_a_thread_writing_through_a_second_connection_meets_sqlites_timeout(
    tmp_path: Path,
) -> None:
    # Queued, it would wait for its own turn forever; unqueued it fails as before.
    db = tmp_path / "nested.db"
    first = sqlite3.connect(db, factory=QueuedConnection, timeout=0.2)
    second = sqlite3.connect(db, factory=QueuedConnection, timeout=0.2)
    try:
        first.execute("CREATE TABLE t (x INTEGER)")
        first.commit()
        first.begin_write()  # type: ignore[attr-defined]
        first.execute("INSERT INTO t VALUES (1)")
        second.begin_write()  # type: ignore[attr-defined]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            second.execute("INSERT INTO t VALUES (2)")
        second.rollback()
        first.commit()
        assert not is_taken(db)
        second.begin_write()  # type: ignore[attr-defined]  # this thread queues again
        assert is_taken(db)
        second.execute("INSERT INTO t VALUES (3)")
        second.commit()
        assert [r[0] for r in first.execute("SELECT x FROM t ORDER BY x")] == [1, 3]
    finally:
        first.close()
        second.close()
