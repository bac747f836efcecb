"""Waking a controller in another process when the store is SQLite.

On PostgreSQL every change reaches every process by ``NOTIFY``
(``ops.changes``). SQLite has nothing like it, so a supervised controller saw
a create, a confirm or a cancel made by an API worker only at its next poll
(``controller.poll_s``, 1 s). Here each controller process binds a UNIX
datagram socket in ``<data_dir>/wake/`` (named after its pid), and a process
that changed something sends one byte to every socket there.

- A socket whose process died refuses the datagram; the sender removes it.
- A full queue means a wake-up is already pending: the byte is dropped.
- Anything that goes wrong costs only latency: the poll stays the fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

WAKE_DIR = "wake"
RECV_TIMEOUT_S = 0.5  # how soon stop() is noticed; a datagram ends the wait at once


def wake_dir(data_dir: Path) -> Path:
    return data_dir / WAKE_DIR


def poke(data_dir: Path) -> int:
    """One byte to every controller listening under ``data_dir``; the number
    reached. Never raises: a missed wake-up is only a poll's latency."""
    where = wake_dir(data_dir)
    try:
        targets = sorted(where.glob("*.sock"))
    except OSError:
        return 0
    if not targets:
        return 0
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for path in targets:
            try:
                s.sendto(b"!", str(path))
                reached += 1
            except ConnectionRefusedError:
                # Nobody reads it: its controller is gone (kill -9 leaves it).
                with contextlib.suppress(OSError):
                    path.unlink()
            except BlockingIOError:
                reached += 1  # its queue is full: a wake-up is pending already
            except OSError as exc:
                log.debug("wake-up of %s not sent: %s", path, exc)
    return reached


class WakeListener:
    """Calls ``on_wake`` for each datagram on this process's socket."""

    def __init__(self, data_dir: Path, on_wake: Callable[[], None]) -> None:
        self.path = wake_dir(data_dir) / f"{os.getpid()}.sock"
        self.on_wake = on_wake
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Bound and listening; False (and polling alone) when it cannot be."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            # A previous process with this pid (a container restart) left it.
            self.path.unlink(missing_ok=True)
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
        except OSError as exc:  # a path over 107 bytes, a read-only folder
            sock.close()
            log.warning("no cross-process wake-up (%s): the controller polls", exc)
            return False
        sock.settimeout(RECV_TIMEOUT_S)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vmshadow-wake", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            self.on_wake()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)


__all__ = ["WakeListener", "poke", "wake_dir"]
