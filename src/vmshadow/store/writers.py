"""SQLite's writers take turns in a queue the kernel keeps, not by sleeping.

SQLite has one write lock per database. A connection that finds it taken
waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... then 100 ms
between tries and never learns when the lock is freed. With the controller
writing about 150 times a second (its lock held about half the time at 100
concurrent transitions), the API's creates kept waking up to a taken lock:
their wait for it measured 130-250 ms at p90 and up to 1.5 s, while the
transactions themselves held it for a few milliseconds.

So every connection to a database file also holds an exclusive ``flock`` on
``<database>-writer`` from its first write statement to its commit or
rollback. A writer that must wait blocks in the kernel and is woken the
moment the lock is released, in every process and thread alike (each
connection opens the file itself, and locks of separate opens exclude each
other even within a process). SQLite's own lock still guards the data: this
only orders who asks for it, so a writer that does not use it (the
``sqlite3`` shell, another program) is still safe, merely unqueued.

The flock is taken where SQLite's write lock would be (the first
INSERT/UPDATE/DELETE, or a ``BEGIN IMMEDIATE``) and released where it is
(commit, rollback, close), so it adds no wait that SQLite's lock would not
impose. A process killed while writing loses its flock with its files; one
stopped mid-write (SIGSTOP) makes the others wait until it goes on or dies,
where SQLite alone would have failed them after its 30 s busy timeout. A
thread that writes through a second connection while its first holds the
turn is not queued (it would wait for itself): it meets SQLite's lock and
its busy timeout, as before.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from typing import Any

# The statements that take SQLite's write lock (pysqlite opens a transaction
# before the DML ones; BEGIN IMMEDIATE takes the lock at once; DDL writes).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE", "CREATE", "DROP", "ALTER")


# Thread id -> the connection whose turn that thread holds.
_holders: dict[int, QueuedConnection] = {}


def writer_lock_path(database: str) -> str:
    return f"{database}-writer"


class QueuedConnection(sqlite3.Connection):
    """A ``sqlite3`` connection whose writes queue on the database's writer lock.

    Given to ``sqlite3.connect`` as its ``factory``; an in-memory or URI
    database has no file beside it to lock and is not queued.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._writer_fd = -1
        self._writing = False
        self._writer_thread = 0
        name = os.fspath(database) if isinstance(database, str | os.PathLike) else ""
        if name and name != ":memory:" and not kwargs.get("uri"):
            self._writer_fd = os.open(
                writer_lock_path(str(name)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )

    def begin_write(self) -> None:
        """Wait for our turn to write (no-op when it is already ours)."""
        if self._writer_fd < 0 or self._writing:
            return
        me = threading.get_ident()
        if me in _holders:
            return  # this thread's other connection has the turn: see the module's doc
        fcntl.flock(self._writer_fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        self._writing = True
        self._writer_thread = me
        _holders[me] = self

    def _end_write(self) -> None:
        if self._writing:
            self._writing = False
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)
            # A write may end on another thread than the one that began it
            # (a pool's reset): the turn is the beginner's to forget.
            if _holders.get(self._writer_thread) is self:
                del _holders[self._writer_thread]

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._end_write()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._end_write()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._end_write()
            if self._writer_fd >= 0:
                os.close(self._writer_fd)
                self._writer_fd = -1


def queue_writes(_conn: Any, cursor: Any, statement: str, *_rest: Any) -> None:
    """SQLAlchemy's ``before_cursor_execute``: a write waits for its turn first."""
    if statement.lstrip()[:15].upper().startswith(_WRITES):
        dbapi = cursor.connection
        if isinstance(dbapi, QueuedConnection):
            dbapi.begin_write()
