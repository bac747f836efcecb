"""Signed webhooks: a JSON POST when a transition waits for a decision,
launches, fails or completes (``[webhooks]``, docs/operations.md).

The deliverer follows its own event feed, from a cursor kept in
``<data_dir>/webhooks.cursor``: an event is delivered (or given up on) before
the cursor passes it, so a restart goes on where the last process stopped
(at least once; the ``X-Vmshadow-Delivery`` id lets a receiver drop a
repeat). Events go out one at a time, in order: a receiver that is down holds
the later ones back while the first is retried with backoff (doubling, at
most 300 s, ``max_attempts`` tries), then logged as given up. A 4xx other than
408 and 429 is not retried: the receiver refused that document.

Only one process per data folder delivers: it holds an advisory lock on the
cursor file (a second ``vmshadow serve`` on the same folder delivers nothing,
and says so).

The signature is ``sha256=HEX`` of HMAC-SHA256 with the secret over
``TIMESTAMP.BODY`` (``X-Vmshadow-Timestamp``, Unix seconds): a receiver
recomputes it and refuses an old timestamp, so a recorded delivery cannot be
replayed later.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from vmshadow import __version__
from vmshadow.domain.errors import VmshadowError
from vmshadow.ops.feed import EventFeed, FeedEvent
from vmshadow.ops.settings import WebhookSettings
from vmshadow.store.repository import Store

log = logging.getLogger(__name__)

MAX_DELAY_S = 300.0
QUEUE_MAX = 1000  # events read ahead of delivery; the feed waits when it is full
RETRYABLE_4XX = {408, 429}


def ensure_secret(path: Path) -> str:
    """The HMAC key in ``path``, made (0600, 32 random bytes as hex) when missing."""
    try:
        text = path.read_text().strip()
        if text:
            os.chmod(path, 0o600)
            return text
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return ensure_secret(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return ensure_secret(path)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookDeliverer:
    def __init__(
        self,
        settings: WebhookSettings,
        store: Store,
        data_dir: Path,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        assert settings.url is not None, "webhooks without a URL"
        self.settings = settings
        self.url = settings.url
        self.store = store
        self.secret = ensure_secret(settings.secret_file or data_dir / "webhook-secret")
        self.cursor_file = data_dir / "webhooks.cursor"
        self._client = client or httpx.Client(timeout=settings.timeout_s, follow_redirects=False)
        self._queue: queue.Queue[FeedEvent | None] = queue.Queue(QUEUE_MAX)
        self._stop = threading.Event()
        self._lock_file: IO[str] | None = None
        self._thread: threading.Thread | None = None
        self.feed: EventFeed | None = None
        self.delivered = 0
        self.given_up = 0

    # -- the cursor ------------------------------------------------------------------------
    def _take_lock(self) -> bool:
        self.cursor_file.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.cursor_file.with_suffix(".lock"), "a")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._lock_file = f
        return True

    def read_cursor(self) -> int | None:
        try:
            return int(self.cursor_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _write_cursor(self, event_id: int) -> None:
        tmp = self.cursor_file.with_suffix(".tmp")
        tmp.write_text(f"{event_id}\n")
        os.replace(tmp, self.cursor_file)

    # -- running ---------------------------------------------------------------------------
    def start(self) -> bool:
        """Follow the log and deliver; False when another process delivers for this folder."""
        if not self._take_lock():
            log.warning(
                "webhooks: another vmshadow process delivers for %s; this one will not",
                self.cursor_file.parent,
            )
            return False
        after = self.read_cursor()
        if after is None:  # the first start: from now on, not the whole past
            after = self.store.last_event_id()
            self._write_cursor(after)
        self.feed = EventFeed(self.store, after=after)
        self.feed.subscribe(self._enqueue)
        self._thread = threading.Thread(target=self._run, name="vmshadow-webhooks", daemon=True)
        self._thread.start()
        self.feed.start()
        log.info("webhooks: delivering to %s from event %s on", self.url, after)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self.feed is not None:
            self.feed.stop()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=15)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._client.close()

    def _enqueue(self, ev: FeedEvent) -> None:
        # Every event passes through, sent or not, so the cursor can move past it.
        while not self._stop.is_set():
            try:
                self._queue.put(ev, timeout=1.0)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            ev = self._queue.get()
            if ev is None:
                return
            if self.wanted(ev):
                self._deliver(ev)
            self._write_cursor(ev.id)

    def wanted(self, ev: FeedEvent) -> bool:
        return ev.kind == "state" and ev.state in self.settings.events

    # -- one delivery ----------------------------------------------------------------------
    def document(self, ev: FeedEvent) -> dict[str, Any]:
        row = self.store.get(ev.transition_id)
        return {
            "delivery": f"e{ev.id}",
            "type": f"transition.{ev.state}",
            "at": ev.at.isoformat(),
            "message": ev.message,
            "transition": {
                "id": row.id,
                "kind": row.kind,
                "vm_name": row.vm_name,
                "profile": row.profile,
                "load": row.load,
                "state": ev.state,
                "requested": {"vcpus": row.req_vcpus, "memory_mib": row.req_memory_mib},
                "final": (
                    {"vcpus": row.final_vcpus, "memory_mib": row.final_memory_mib}
                    if row.final_vcpus
                    else None
                ),
            },
        }

    def _deliver(self, ev: FeedEvent) -> None:
        try:
            body = json.dumps(self.document(ev), separators=(",", ":")).encode()
        except VmshadowError as exc:
            log.error("webhooks: cannot describe event %s: %s; skipped", ev.id, exc)
            self.given_up += 1
            return
        delay = self.settings.retry_base_s
        for attempt in range(1, self.settings.max_attempts + 1):
            outcome = self._post(ev, body)
            if outcome is None:
                self.delivered += 1
                return
            final = attempt == self.settings.max_attempts or outcome.startswith("refused")
            if final:
                log.error(
                    "webhooks: gave up on %s (transition %s %s) after %d tries: %s",
                    f"e{ev.id}", ev.transition_id, ev.state, attempt, outcome,
                )  # fmt: skip
                self.given_up += 1
                return
            log.warning(
                "webhooks: %s try %d failed (%s); again in %.1f s", f"e{ev.id}", attempt,
                outcome, delay,
            )  # fmt: skip
            if self._stop.wait(delay):
                return  # stopping: the cursor stays before this event, sent again next start
            delay = min(MAX_DELAY_S, delay * 2)

    def _post(self, ev: FeedEvent, body: bytes) -> str | None:
        """None when delivered, else why not ("refused ..." is not worth a retry)."""
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"vmshadow/{__version__}",
            "X-Vmshadow-Event": f"transition.{ev.state}",
            "X-Vmshadow-Delivery": f"e{ev.id}",
            "X-Vmshadow-Timestamp": ts,
            "X-Vmshadow-Signature": signature(self.secret, ts, body),
        }
        try:
            r = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= r.status_code < 300:
            return None
        if 300 <= r.status_code < 400:
            return f"refused with HTTP {r.status_code} (redirects are not followed)"
        if 400 <= r.status_code < 500 and r.status_code not in RETRYABLE_4XX:
            return f"refused with HTTP {r.status_code}"
        return f"HTTP {r.status_code}"
