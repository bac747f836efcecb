"""Domain events from libvirt: a domain defined, undefined, started, stopped, or
its metadata changed, on one host; so a request element is seen at once.

Events are a hint, not the record: a watcher says "something changed on this
host" and the controller's detection sweeps the host (it also sweeps on a
timer and at start, so an event missed while disconnected, or while vmshadow
was down, costs a delay and nothing else).

libvirt delivers events through an event loop the process registers once
(``virEventRegisterDefaultImpl``) and runs on a thread of its own
(``virEventRunDefaultImpl``). Connections opened after that get keepalive
probes serviced by the same loop, which is why the loop thread never stops
once started.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

log = logging.getLogger(__name__)
RETRY_S = 5.0
_loop_lock = threading.Lock()
_loop: threading.Thread | None = None


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it, once per process."""
    global _loop
    with _loop_lock:
        if _loop is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _loop = threading.Thread(target=_run_loop, name="libvirt-events", daemon=True)
        _loop.start()


def _run_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # the loop must outlive any one bad iteration
            log.exception("libvirt event loop iteration failed")
            threading.Event().wait(0.5)


class DomainWatcher:
    """Calls ``on_change(uuid)`` for every lifecycle or metadata event of any
    domain on ``uri``, and ``on_change(None)`` after each (re)connection (events
    may have been missed while it was away). Reconnects every ``retry_s``."""

    def __init__(
        self, uri: str, on_change: Callable[[str | None], None], *, retry_s: float = RETRY_S
    ) -> None:
        self.uri = uri
        self.on_change = on_change
        self.retry_s = retry_s
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        ensure_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"domain-events-{self.uri}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = None
            ids: list[int] = []
            try:
                conn = libvirt.openReadOnly(self.uri)
                self._closed.clear()
                conn.registerCloseCallback(self._on_close, None)
                ids.append(
                    conn.domainEventRegisterAny(
                        None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                    )
                )
                ids.append(
                    conn.domainEventRegisterAny(
                        None, libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, self._on_metadata, None
                    )
                )
                self.connected.set()
                self.on_change(None)  # what happened while nobody listened
                while not self._stop.is_set() and not self._closed.wait(self.retry_s):
                    if not conn.isAlive():
                        break
            except libvirt.libvirtError as exc:
                log.warning("domain events from %s unavailable: %s", self.uri, exc)
            finally:
                self.connected.clear()
                if conn is not None:
                    _close(conn, ids)
            self._stop.wait(self.retry_s)

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        log.info("domain events from %s: connection closed (reason %d)", self.uri, reason)
        self._closed.set()

    def _on_lifecycle(self, _c: Any, dom: Any, _event: int, _detail: int, _o: Any) -> None:
        self._changed(dom)

    def _on_metadata(self, _c: Any, dom: Any, _mtype: int, _ns: str, _o: Any) -> None:
        self._changed(dom)

    def _changed(self, dom: Any) -> None:
        # On the event loop's thread: only a hand-off, never a libvirt call that waits.
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            uuid = None
        try:
            self.on_change(uuid)
        except Exception:  # a callback's bug must not stop the event loop
            log.exception("domain event handler failed")


def _close(conn: Any, ids: list[int]) -> None:
    for cid in ids:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(cid)
    with contextlib.suppress(libvirt.libvirtError):
        conn.unregisterCloseCallback()
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
