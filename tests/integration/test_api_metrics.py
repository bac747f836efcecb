"""``/metrics`` on libvirt's test driver: what the event feed observed, what the
store holds now, and the API's own latency, parsed with Prometheus' parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_webhooks import create, to_predicted

from vmshadow.config import Settings, load_settings
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionState
from vmshadow.ops.feed import EventFeed
from vmshadow.server import Service

pytestmark = pytest.mark.libvirt
S = TransitionState


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {("data_dir",): str(tmp_path), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_states_durations_and_ratios_from_the_feed(client: TestClient, svc: Service) -> None:
    feed = EventFeed(svc.store)
    feed.subscribe(svc.app.state.metrics.on_event)
    feed.poll_once()  # the cursor starts at the log's end
    tid = create(svc)
    to_predicted(svc, tid)
    done = create(svc, "web2")
    to_predicted(svc, done)
    st = svc.store
    st.advance(done, S.LAUNCHING, "launching")
    st.advance(done, S.RUNNING, "running")
    # What the VM used after its boot (t >= 60 s): 0.25 vCPU against a need of 0.5.
    points = [
        UsagePoint(60.0 + t, Source.HOST, None, 0.25, 150.0, 5.0, 0.0, 0.0, 0.0) for t in range(30)
    ]
    st.add_samples(done, "vm", 0, points)
    st.advance(done, S.COMPLETED, "observed")
    assert feed.poll_once() > 8
    m = scrape(client)
    assert m[("vmshadow_transitions", (("state", "predicted"),))] == 1
    assert m[("vmshadow_transitions", (("state", "completed"),))] == 1
    assert m[("vmshadow_transitions", (("state", "failed"),))] == 0
    assert m[("vmshadow_time_to_recommendation_seconds_count", ())] == 2
    assert m[("vmshadow_transition_state_seconds_count", (("state", "shadowing"),))] == 2
    assert m[("vmshadow_transition_state_seconds_count", (("state", "running"),))] == 1
    assert m[("vmshadow_transitions_finished_total", (("state", "completed"),))] == 1
    ratio = ("vmshadow_realized_over_predicted_sum", (("resource", "vcpus"),))
    assert m[ratio] == pytest.approx(0.5)
    assert m[("vmshadow_realized_over_predicted_sum", (("resource", "memory_mib"),))] == (
        pytest.approx(0.5)
    )
    # The built-in image's IOPS are every disk's: never held against the need.
    assert ("vmshadow_realized_over_predicted_count", (("resource", "iops"),)) not in m
    assert m[("vmshadow_sse_clients", ())] == 0


def test_api_latency_by_route_template(client: TestClient, svc: Service) -> None:
    tid = create(svc)
    for _ in range(3):
        assert client.get(f"/api/v1/transitions/{tid}").status_code == 200
    assert client.get("/api/v1/transitions/nope").status_code == 404
    m = scrape(client)
    ok = (("method", "GET"), ("route", "/api/v1/transitions/{tid}"), ("status", "200"))
    assert m[("vmshadow_api_request_duration_seconds_count", ok)] == 3
    missing = (("method", "GET"), ("route", "/api/v1/transitions/{tid}"), ("status", "404"))
    assert m[("vmshadow_api_request_duration_seconds_count", missing)] == 1
    # One series per route, never one per transition id.
    assert not any(tid in str(labels) for _name, labels in m)
