"""Prometheus metrics at ``/metrics``.

Three sources, each where the figure is known:

- the event feed (``feed.py``): how long transitions spend in each state
  (``shadowing`` is the shadow's boot, ``profiling`` the profile), the time
  from request to the first recommendation, how transitions end, and at
  completion what the VM used over what was predicted, per resource;
- the store, read at scrape time: transitions by state right now;
- the API itself: each request's latency by route template, and the live
  SSE streams.

The feed reads the log of every controller, so one API process reports the
whole fleet; counters start at zero with the process, as Prometheus expects.
Each ``Metrics`` has its own registry (tests build several apps in one process).

Under ``vmshadow serve`` the API runs as several worker processes and a scrape
reaches any one of them: prometheus-client's multiprocess mode then holds the
figures (``PROMETHEUS_MULTIPROC_DIR``, a private folder the supervisor empties
at start), and whichever worker answers adds up every worker's. Only one
worker (``api-0``) follows the event feed, so a transition is counted once.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmshadow.controller.realized import realized
from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.transition import TransitionState
from vmshadow.ops.feed import FeedEvent
from vmshadow.store.base import aware
from vmshadow.store.repository import Store

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATE_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 86400)
RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0)
IN_FLIGHT_MAX = 100_000  # transitions whose last state the feed remembers


class _NowCollector(Collector):
    """What is true at scrape time: transitions by state."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily(
            "vmshadow_transitions", "transitions in each state now", labels=["state"]
        )
        try:
            counts = self.store.count_by_state()
        except VmshadowError as exc:  # a scrape must answer even with the database away
            log.warning("metrics: cannot count transitions: %s", exc)
            counts = {}
        for state in TransitionState:
            by_state.add_metric([state.value], counts.get(state.value, 0))
        yield by_state


class Metrics:
    def __init__(self, store: Store, streams: Callable[[], int] = lambda: 0) -> None:
        self.store = store
        self.streams = streams
        self.registry = CollectorRegistry()
        self._multiprocess = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        r = self.registry
        self.api_latency = Histogram(
            "vmshadow_api_request_duration_seconds",
            "API requests by method, route template and status code",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.state_seconds = Histogram(
            "vmshadow_transition_state_seconds",
            "time a transition spent in a state, observed as it left it "
            "(shadowing: the shadow's boot; profiling: the profile)",
            ["state"],
            buckets=STATE_BUCKETS,
            registry=r,
        )
        self.to_recommendation = Histogram(
            "vmshadow_time_to_recommendation_seconds",
            "from the request to its first recommendation",
            buckets=STATE_BUCKETS,
            registry=r,
        )
        self.realized_ratio = Histogram(
            "vmshadow_realized_over_predicted",
            "at completion, what the VM used over the predicted need, per resource",
            ["resource"],
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "vmshadow_transitions_finished_total",
            "transitions that reached an end state",
            ["state"],
            registry=r,
        )
        # Set as streams open and close (a request each); one per worker, summed.
        self.sse_clients = Gauge(
            "vmshadow_sse_clients",
            "live server-sent event streams",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._now = _NowCollector(store)
        r.register(self._now)
        # transition -> (state, since): what the feed saw last of each one in flight.
        self._last: OrderedDict[str, tuple[str, datetime]] = OrderedDict()

    def render(self) -> bytes:
        if self._multiprocess is None:
            return generate_latest(self.registry)
        # Every worker's files, read now (the registry above only writes them).
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, self._multiprocess)  # type: ignore[no-untyped-call]
        scrape.register(self._now)
        return generate_latest(scrape)

    # -- the event feed --------------------------------------------------------------------
    def on_event(self, ev: FeedEvent) -> None:
        if ev.kind != "state" or ev.state is None:
            return
        previous = self._last.pop(ev.transition_id, None)
        if previous is not None:
            state, since = previous
            self.state_seconds.labels(state).observe(max(0.0, (ev.at - since).total_seconds()))
        if ev.state == TransitionState.PREDICTED.value:
            self._observe_recommendation(ev)
        if TransitionState(ev.state).terminal:
            self.finished.labels(ev.state).inc()
            if ev.state == TransitionState.COMPLETED.value:
                self._observe_realized(ev.transition_id)
            return
        self._last[ev.transition_id] = (ev.state, ev.at)
        while len(self._last) > IN_FLIGHT_MAX:  # transitions whose end was never seen
            self._last.popitem(last=False)

    def _observe_recommendation(self, ev: FeedEvent) -> None:
        created = aware(self.store.get(ev.transition_id).created_at)
        if created is not None:
            self.to_recommendation.observe(max(0.0, (ev.at - created).total_seconds()))

    def _observe_realized(self, tid: str) -> None:
        pred = self.store.latest_prediction(tid)
        used = realized(self.store, tid)
        need = (pred.detail.get("need") if pred is not None else None) or {}
        if used is None or not used.settled or not isinstance(need, dict):
            return  # no verdict without enough samples after the boot
        got = used.requirement.as_dict()
        for resource in ("vcpus", "memory_mib", "iops"):
            if resource == "iops" and used.iops_all_disks:
                continue  # the host's counters add up disks the cap never covered
            want, have = need.get(resource), got.get(resource)
            if isinstance(want, int | float) and isinstance(have, int | float) and want > 0:
                self.realized_ratio.labels(resource).observe(have / want)

    # -- the API ---------------------------------------------------------------------------
    def asgi(self, app: ASGIApp) -> ASGIApp:
        """``app`` with each HTTP request's latency observed (a plain ASGI wrapper:
        Starlette's BaseHTTPMiddleware leaves memory streams unclosed)."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    self.sse_clients.set(self.streams())  # a stream has its slot by now
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                # The router puts the matched route in the scope: its template
                # (/transitions/{tid}), never the path, so one series per route
                # and not one per transition; unmatched paths share one label.
                self.sse_clients.set(self.streams())
                path = getattr(scope.get("route"), "path", None) or "unmatched"
                self.api_latency.labels(scope["method"], path, str(status)).observe(
                    time.perf_counter() - started
                )

        return measured
