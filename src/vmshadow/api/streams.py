"""Server-sent event streams of transitions, fed by one poller per process.

Each stream used to poll the database twice every 0.5 s on its own: 500 idle
streams cost 96 % of a CPU and slowed every other request. Here one task
polls the store for what is new across every watched transition (three
queries a round, whatever the number of streams) and hands it to each
stream's queue; a stream only waits on its queue. On PostgreSQL a NOTIFY of
new events or samples (``ops/changes.py``) starts the next round at once;
the poll stays as the fallback (and is all there is on SQLite). The number of streams is
capped (``api.max_streams``): past it the answer is 503.

A new stream registers first and then reads its transition's history, so
nothing falls between the history and the first round it receives; what it
sees twice is dropped by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from vmshadow.domain.samples import StoredSample
from vmshadow.domain.transition import StoredEvent, TransitionState
from vmshadow.store import rounds
from vmshadow.store.repository import Store

log = logging.getLogger(__name__)

POLL_S = 0.5
MIN_ROUND_GAP_S = 0.1
ROUND_SAMPLES = 5000  # rows a round reads at most; the rest comes next round
HISTORY_PAGE = 500
QUEUE_MAX = 20_000  # a stream this far behind is ended; its browser reconnects

Item = tuple[str, int, dict[str, Any]]  # (kind, row id, payload)


class StreamsFull(Exception):
    """Every stream slot is taken."""


def _event(e: StoredEvent) -> Item:
    payload = {
        "id": e.id,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "state": e.state,
        "message": e.message,
    }
    return ("event", e.id, payload)


def _sample(s: StoredSample) -> Item:
    p = s.point
    payload = {
        "target": s.target,
        "run": s.run,
        "t": p.t,
        "source": p.source.value,
        "phase_id": p.phase_id,
        "busy_vcpus": p.busy_vcpus,
        "mem_used_mib": p.mem_used_mib,
        "iops": p.read_iops + p.write_iops,
    }
    return ("sample", s.id, payload)


@dataclass(eq=False)
class Subscription:
    tid: str
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    last_event: int = 0
    last_sample: int = 0
    overflowed: bool = False
    released: bool = False


@dataclass
class _Round:
    items: dict[str, list[Item]]
    terminal: dict[str, TransitionState]
    event_cursor: int
    sample_cursor: int


class StreamHub:
    def __init__(self, store: Store, *, max_streams: int, poll_s: float = POLL_S) -> None:
        self.store = store
        self.max_streams = max_streams
        self.poll_s = poll_s
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cursors: tuple[int, int] | None = None
        self._init_lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None

    def wake(self) -> None:
        """Start the next round now rather than at the next poll; thread-safe."""
        loop, ev = self._loop, self._wake
        if loop is not None and ev is not None and not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)

    @property
    def count(self) -> int:
        return self._count

    # -- slots -----------------------------------------------------------------------------
    def reserve(self, tid: str) -> Subscription:
        """Take a slot (synchronously, so the cap holds without a lock) or raise StreamsFull."""
        if self._count >= self.max_streams:
            raise StreamsFull
        self._count += 1
        return Subscription(tid)

    def release(self, sub: Subscription) -> None:
        """Give the slot back; safe to call more than once."""
        if sub.released:
            return
        sub.released = True
        self._count -= 1
        subs = self._subs.get(sub.tid)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.tid]

    async def _register(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests run several): start afresh
            self._loop, self._task, self._cursors = loop, None, None
            self._init_lock = asyncio.Lock()
            self._wake = asyncio.Event()
        async with self._init_lock:
            if self._cursors is None:
                # The round's starting point is taken before the stream registers:
                # everything after it reaches the stream through the rounds.
                self._cursors = await anyio.to_thread.run_sync(self._max_ids)
        self._subs.setdefault(sub.tid, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())

    # -- the stream ------------------------------------------------------------------------
    async def messages(self, sub: Subscription) -> AsyncIterator[dict[str, str]]:
        """The SSE messages of one stream: the history, then what the rounds bring."""
        try:
            await self._register(sub)
            history, state = await anyio.to_thread.run_sync(self._history, sub.tid)
            for item in history:
                msg = self._accept(sub, item)
                if msg is not None:
                    yield msg
            if TransitionState(state).terminal:
                yield {"event": "end", "data": json.dumps({"state": state})}
                return
            while not sub.overflowed:
                kind, row_id, payload = await sub.queue.get()
                if kind == "end":
                    yield {"event": "end", "data": json.dumps(payload)}
                    return
                msg = self._accept(sub, (kind, row_id, payload))
                if msg is not None:
                    yield msg
        finally:
            self.release(sub)

    @staticmethod
    def _accept(sub: Subscription, item: Item) -> dict[str, str] | None:
        kind, row_id, payload = item
        if kind == "event":
            if row_id <= sub.last_event:
                return None
            sub.last_event = row_id
            return {"event": "event", "id": f"e{row_id}", "data": json.dumps(payload)}
        if row_id <= sub.last_sample:
            return None
        sub.last_sample = row_id
        return {"event": "sample", "data": json.dumps(payload)}

    # -- the poller ------------------------------------------------------------------------
    async def _run(self) -> None:
        while self._subs:
            try:
                await self._round()
            except Exception:  # a failed round must not end every stream: try again
                log.exception("stream poll failed; retrying in %s s", self.poll_s)
            assert self._wake is not None
            # Under load a NOTIFY comes with every statement: rounds at most
            # this often, each reading what a whole burst added.
            await asyncio.sleep(MIN_ROUND_GAP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.poll_s - MIN_ROUND_GAP_S))
            self._wake.clear()
        # Nobody watches: the next stream takes a fresh starting point.
        self._cursors = None

    async def _round(self) -> None:
        assert self._cursors is not None
        tids = sorted(self._subs)
        if not tids:
            return
        got = await anyio.to_thread.run_sync(self._fetch, tids, *self._cursors)
        self._cursors = (got.event_cursor, got.sample_cursor)
        for tid, subs in list(self._subs.items()):
            items = got.items.get(tid, [])
            end = got.terminal.get(tid) if not items else None  # what is new goes first
            for sub in list(subs):
                try:
                    for item in items:
                        sub.queue.put_nowait(item)
                    if end is not None:
                        sub.queue.put_nowait(("end", 0, {"state": end}))
                except asyncio.QueueFull:
                    sub.overflowed = True  # the stream stops at its next item

    # -- queries (in a worker thread) --------------------------------------------------------
    def _max_ids(self) -> tuple[int, int]:
        return rounds.max_ids(self.store)

    def _history(self, tid: str) -> tuple[list[Item], str]:
        items: list[Item] = [_event(e) for e in self.store.events(tid)]
        after = 0
        while True:
            page = self.store.samples(tid, after=after, limit=HISTORY_PAGE)
            items += [_sample(s) for s in page]
            if len(page) < HISTORY_PAGE:
                break
            after = page[-1].id
        return items, self.store.get(tid).state

    def _fetch(self, tids: list[str], ev_after: int, sa_after: int) -> _Round:
        items: dict[str, list[Item]] = {}
        got = rounds.new_rows(self.store, tids, ev_after, sa_after, ROUND_SAMPLES)
        events, samples = got.events, got.samples
        for e in events:
            items.setdefault(e.transition_id, []).append(_event(e))
        for smp in samples:
            items.setdefault(smp.transition_id, []).append(_sample(smp))
        terminal = {tid: st for tid, st in got.states.items() if st.terminal}
        return _Round(
            items,
            terminal,
            events[-1].id if events else ev_after,
            samples[-1].id if samples else sa_after,
        )
