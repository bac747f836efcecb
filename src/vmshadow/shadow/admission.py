"""Shadow admission across processes: at most ``controller.max_shadows``
shadows on one libvirt host, whoever starts them (the service's controller,
``vmshadow plan``, another controller).

The count is the host's own: its running shadow domains (``list_shadows``),
so it holds across processes with nothing to keep in step. Between the count
and the domain's creation (the overlay, ``createXML``: a second or two) a
starter holds a *reservation*, a small file under a host-wide lock, which
other starters count too. A reservation ends when its shadow is up
(``release``) or by itself after ``RESERVE_S`` or when its process is gone,
so a boot that failed never holds a slot for long. While a shadow is up and
its reservation not yet released, both count: a waiter may wait those few
seconds longer, never admit one shadow too many.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ConflictError
from vmshadow.hypervisor.port import Hypervisor
from vmshadow.shadow.reaper import pid_alive

RESERVE_S = 30.0  # longer than any boot takes to create its domain
HOST_WIDE = Path("/run/lock/vmshadow")  # shared by every process on this machine


def lock_dir(fallback: Path) -> Path:
    """``HOST_WIDE`` when this process can write there, else ``fallback``
    (a user's own data folder: admission then holds among its own processes)."""
    for where in (HOST_WIDE, fallback):
        try:
            where.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError:
            continue
        if os.access(where, os.W_OK):
            return where
    return fallback


@dataclass
class Reservation:
    path: Path | None

    def release(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


class Admission:
    def __init__(self, hv: Hypervisor, limit: int, where: Path) -> None:
        self._hv = hv
        self._limit = limit
        key = hashlib.sha256(hv.uri.encode()).hexdigest()[:12]
        self._lock = where / f"shadows-{key}.lock"
        self._prefix = f"shadows-{key}.reserved."
        self._dir = where

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _reservations(self, now: float) -> int:
        live = 0
        for f in self._dir.glob(self._prefix + "*"):
            try:
                pid, at = (float(x) for x in f.read_text().split())
            except (OSError, ValueError):
                continue
            if now - at < RESERVE_S and pid_alive(int(pid)):
                live += 1
            else:
                with contextlib.suppress(OSError):
                    f.unlink()
        return live

    def in_use(self) -> int:
        """Shadows on the host plus live reservations."""
        with self._locked():
            return len(self._hv.list_shadows()) + self._reservations(time.time())

    def try_reserve(self) -> Reservation | None:
        with self._locked():
            now = time.time()
            if len(self._hv.list_shadows()) + self._reservations(now) >= self._limit:
                return None
            path = self._dir / f"{self._prefix}{uuid.uuid4().hex[:12]}"
            path.write_text(f"{os.getpid()} {now}")
            return Reservation(path)

    def wait(
        self,
        *,
        wait_s: float,
        on_wait: Callable[[int], None] = lambda _n: None,
        check: Callable[[], object] = lambda: None,
        poll_s: float = 1.0,
    ) -> Reservation:
        """A reservation once a slot is free; ``on_wait`` (the count in use)
        once when there is none at first, ``check`` (may raise) every poll.
        Raises ``ConflictError`` after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            got = self.try_reserve()
            if got is not None:
                return got
            if not told:
                on_wait(self.in_use())
                told = True
            if time.monotonic() >= deadline:
                raise ConflictError(
                    f"no free shadow slot on {self._hv.uri} after {wait_s:.0f} s: "
                    f"{self.in_use()} shadows running or starting, "
                    f"controller.max_shadows is {self._limit}"
                )
            check()
            time.sleep(poll_s)


__all__ = ["Admission", "Reservation", "lock_dir"]
