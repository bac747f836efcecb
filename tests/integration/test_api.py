"""The REST API on libvirt's test driver, without a controller: validation,
auth, decisions and races. The controller's own path is covered end to end."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.transition import TransitionState
from vmshadow.server import Service, build

pytestmark = pytest.mark.libvirt
S = TransitionState
API = "/api/v1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            ("data_dir",): str(tmp_path),
            ("libvirt_uri",): "test:///default",
            ("quotas", "max_vcpus"): 8,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )


def auth(svc: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token}"}


def launch_body(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "vm_name": "web1",
        "profile": "smoke",
        "requested": {"vcpus": 2, "memory_mib": 2048},
    }
    body.update(kw)
    return body


def predicted(svc: Service, tid: str, need: Requirement, rec: Allocation) -> None:
    """Stand in for the controller up to a prediction (the store's real path)."""
    st = svc.store
    st.advance(tid, S.SHADOWING, "shadowing")
    st.advance(tid, S.PROFILING, "profiling")
    st.add_prediction(tid, Prediction("shadow-measured", "x1.2 interim", 0, 1.2, need, rec))
    st.advance(tid, S.PREDICTED, "predicted")


def test_token_file_is_private_and_stable(svc: Service, settings: Settings) -> None:
    assert settings.token_file.stat().st_mode & 0o777 == 0o600
    assert svc.token_created
    again = build(settings, with_controller=False)
    assert again.token == svc.token and not again.token_created
    assert (settings.data_dir / "vmshadow.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", f"{API}/transitions"),
        ("post", f"{API}/transitions/x/cancel"),
        ("post", f"{API}/transitions/x/confirm"),
        ("post", f"{API}/transitions/x/override"),
        ("post", f"{API}/transitions/x/fast-launch"),
    ],
)
def test_mutations_need_the_token(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, json={})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.request(method, path, json={}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_create_list_get(client: TestClient, svc: Service) -> None:
    r = client.post(f"{API}/transitions", json=launch_body(load=200), headers=auth(svc))
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["state"] == "requested" and t["requested"]["vcpus"] == 2 and t["load"] == 200
    assert r.headers["location"] == f"{API}/transitions/{t['id']}"
    assert [x["id"] for x in client.get(f"{API}/transitions").json()] == [t["id"]]
    got = client.get(f"{API}/transitions/{t['id']}").json()
    assert got["events"][0]["state"] == "requested"
    assert client.get(f"{API}/transitions/nope").status_code == 404


def test_list_pages_and_filters_by_state_and_name(client: TestClient, svc: Service) -> None:
    ids = []
    for name in ("web1", "db1", "web2"):
        r = client.post(f"{API}/transitions", json=launch_body(vm_name=name), headers=auth(svc))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert client.post(f"{API}/transitions/{ids[1]}/cancel", headers=auth(svc)).status_code == 200

    def names(**query: object) -> list[str]:
        r = client.get(f"{API}/transitions", params=query)
        assert r.status_code == 200, r.text
        return [t["vm_name"] for t in r.json()]

    assert names() == ["web2", "db1", "web1"]  # newest first
    assert names(limit=2) == ["web2", "db1"]
    assert names(limit=2, offset=2) == ["web1"]
    assert names(name="WEB") == ["web2", "web1"]
    assert names(name="web", offset=1, limit=1) == ["web1"]
    assert names(state="cancelled") == ["db1"]
    assert names(state="requested", name="db") == []
    bad = client.get(f"{API}/transitions", params={"offset": -1})
    assert bad.status_code == 422 and bad.json()["field"] == "offset"


def test_list_follows_next_links_without_repeats_while_rows_arrive(
    client: TestClient, svc: Service
) -> None:
    """A cursor page starts after the last row seen: rows created between two
    pages neither shift the next page nor show up twice (an offset would)."""
    for i in range(5):
        r = client.post(f"{API}/transitions", json=launch_body(vm_name=f"vm{i}"), headers=auth(svc))
        assert r.status_code == 201, r.text
    seen: list[str] = []
    r = client.get(f"{API}/transitions", params={"limit": 2, "name": "vm"})
    pages = 0
    while True:
        pages += 1
        seen += [t["vm_name"] for t in r.json()]
        if pages == 1:  # a newer row arrives after the first page was read
            client.post(f"{API}/transitions", json=launch_body(vm_name="vm9"), headers=auth(svc))
        link = r.headers.get("link")
        if link is None:
            assert "x-next-cursor" not in r.headers
            break
        url, rel = link.split(";")
        assert rel.strip() == 'rel="next"' and "name=vm" in url and "limit=2" in url
        assert r.headers["x-next-cursor"] in url
        r = client.get(url.strip()[1:-1])
        assert r.status_code == 200, r.text
    assert seen == ["vm4", "vm3", "vm2", "vm1", "vm0"] and pages == 3
    bad = client.get(f"{API}/transitions", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    both = client.get(
        f"{API}/transitions", params={"cursor": r.headers.get("x-next-cursor") or "x", "offset": 2}
    )
    assert both.status_code == 422 and both.json()["field"] == "cursor"


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        (launch_body(vm_name="Bad Name"), "name", 422),
        (launch_body(profile="nope"), "profile", 422),
        (launch_body(requested={"vcpus": 0, "memory_mib": 512}), "requested.vcpus", 422),
        (launch_body(requested={"vcpus": 9, "memory_mib": 512}), "vcpus", 422),  # quota 8
        (launch_body(requested={"vcpus": 2, "memory_mib": 10**6}), "memory_mib", 422),  # host
        (launch_body(image="/no/such.qcow2"), "image", 422),
        (launch_body(colour="red"), "colour", 422),
        (launch_body(requested=None), "requested", 422),
    ],
)
def test_bad_input_names_the_field(
    client: TestClient, svc: Service, body: dict[str, object], field: str, status: int
) -> None:
    r = client.post(f"{API}/transitions", json=body, headers=auth(svc))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.json()
    assert client.get(f"{API}/transitions").json() == []  # nothing half-created


def test_every_bad_field_comes_back_at_once(client: TestClient, svc: Service) -> None:
    body = launch_body(
        vm_name="Bad Name",
        profile="web",  # and no load
        image="/no/such.qcow2",
        requested={"vcpus": 9, "memory_mib": 100_000},  # above the quota of 8, the host's RAM
    )
    r = client.post(f"{API}/transitions", json=body, headers=auth(svc))
    assert r.status_code == 422, r.text
    got = r.json()
    # The first as every error is answered; then all of them, in the service's order.
    assert (got["field"], got["reason"]) == ("name", got["errors"][0]["reason"])
    assert got["error"].startswith("name: 'Bad Name' is not a valid VM name")
    assert [e["field"] for e in got["errors"]] == ["name", "load", "image", "vcpus", "memory_mib"]
    assert "above the quota of 8" in got["errors"][3]["reason"]
    assert "more than the host's 3072 MiB" in got["errors"][4]["reason"]
    assert client.get(f"{API}/transitions").json() == []


def test_one_bad_field_is_answered_as_before(client: TestClient, svc: Service) -> None:
    r = client.post(f"{API}/transitions", json=launch_body(vm_name="Bad Name"), headers=auth(svc))
    assert r.status_code == 422 and r.json()["field"] == "name" and "errors" not in r.json()


def test_existing_domain_name_is_a_conflict(client: TestClient, svc: Service) -> None:
    # The test driver always has a domain called "test".
    r = client.post(f"{API}/transitions", json=launch_body(vm_name="test"), headers=auth(svc))
    assert r.status_code == 409 and r.json()["field"] == "vm_name"


def test_oversized_body_is_refused(client: TestClient, svc: Service) -> None:
    r = client.post(
        f"{API}/transitions",
        content=b"{" + b" " * 70000 + b"}",
        headers={**auth(svc), "content-type": "application/json"},
    )
    assert r.status_code == 413


def test_confirm_before_prediction_is_a_conflict(client: TestClient, svc: Service) -> None:
    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    r = client.post(f"{API}/transitions/{tid}/confirm", headers=auth(svc))
    assert r.status_code == 409 and "no prediction" in r.json()["error"]


def test_override_below_need_requires_acknowledgement(client: TestClient, svc: Service) -> None:
    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    predicted(svc, tid, Requirement(3.4, 900, 100), Allocation(5, 1280, 120))
    low = {"vcpus": 2, "memory_mib": 1280}
    review = client.post(f"{API}/transitions/{tid}/override/review", json=low).json()
    assert review["needs_acknowledgement"]
    assert review["warnings"][0]["message"] == (
        "predicted P95 3.4 vCPU > 2 chosen: expect CPU contention"
    )
    r = client.post(f"{API}/transitions/{tid}/override", json=low, headers=auth(svc))
    assert r.status_code == 409 and r.json()["field"] == "acknowledge_risk"
    assert client.get(f"{API}/transitions/{tid}").json()["state"] == "predicted"
    r = client.post(
        f"{API}/transitions/{tid}/override",
        json={**low, "acknowledge_risk": True},
        headers=auth(svc),
    )
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["state"] == "launching" and t["decision"] == "override"
    assert t["final"] == {"vcpus": 2, "memory_mib": 1280, "iops": None}
    assert t["confirmation"]["risk_acknowledged"]
    assert "CPU contention" in t["confirmation"]["warnings"][0]["message"]


def test_a_recommendation_no_host_can_hold_is_refused_at_confirmation(
    client: TestClient, svc: Service
) -> None:
    host_mib = client.get(f"{API}/hosts").json()[0]["memory_mib"]
    big = Allocation(2, host_mib + 1024)  # under the quota, over the only host
    for action in ("confirm", "fast-launch"):
        tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
        predicted(svc, tid, Requirement(1.5, host_mib + 500, 100), big)
        r = client.post(f"{API}/transitions/{tid}/{action}", headers=auth(svc))
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "memory_mib"
        assert r.json()["error"] == (
            f"memory_mib: the recommendation cannot launch: {host_mib + 1024} MiB is more "
            f"than the host's {host_mib} MiB; override with a size that fits"
        )
        # Nothing was decided: the prediction still waits for a decision that fits.
        t = client.get(f"{API}/transitions/{tid}").json()
        assert t["state"] == "predicted" and t["decision"] is None
        client.post(f"{API}/transitions/{tid}/cancel", headers=auth(svc))


def test_concurrent_confirms_over_http_launch_once(client: TestClient, svc: Service) -> None:
    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    predicted(svc, tid, Requirement(0.9, 300, 100), Allocation(1, 512, 120))
    codes: list[int] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        codes.append(client.post(f"{API}/transitions/{tid}/confirm", headers=auth(svc)).status_code)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409, 409, 409]


def test_fast_launch_before_prediction_sets_the_flag(client: TestClient, svc: Service) -> None:
    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    r = client.post(f"{API}/transitions/{tid}/fast-launch", headers=auth(svc))
    assert r.status_code == 200 and r.json()["fast_launch"] is True


def test_cancel_twice(client: TestClient, svc: Service) -> None:
    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    assert client.post(f"{API}/transitions/{tid}/cancel", headers=auth(svc)).json()["state"] == (
        "cancelled"
    )
    assert client.post(f"{API}/transitions/{tid}/cancel", headers=auth(svc)).status_code == 409


def test_stream_ends_after_a_terminal_state(client: TestClient, svc: Service) -> None:
    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    svc.store.add_samples(tid, "shadow", 0, [])
    client.post(f"{API}/transitions/{tid}/cancel", headers=auth(svc))
    with client.stream("GET", f"{API}/transitions/{tid}/stream") as r:
        text = "".join(r.iter_text())
    assert "event: event" in text and '"state": "cancelled"' in text and "event: end" in text


def test_catalogue_and_health(client: TestClient) -> None:
    assert client.get(f"{API}/health").json()["status"] == "ok"
    assert client.get(f"{API}/profiles").json()[0]["name"] == "smoke"
    assert client.get(f"{API}/hosts").json()[0]["cpus"] >= 1
    assert client.get("/openapi.json").status_code == 200


def test_a_polled_transition_is_one_statement(client: TestClient, svc: Service) -> None:
    """Every client polls ``GET /transitions/{id}`` once a second: the row, its
    prediction, confirmation and events come back in one SELECT."""
    from sqlalchemy import event

    tid = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc)).json()["id"]
    predicted(svc, tid, Requirement(0.5, 300, 10), Allocation(1, 512, 100))
    statements: list[str] = []

    def seen(_conn: object, _cur: object, sql: str, *_a: object) -> None:
        statements.append(sql)

    event.listen(svc.store.engine, "before_cursor_execute", seen)
    try:
        r = client.get(f"{API}/transitions/{tid}")
    finally:
        event.remove(svc.store.engine, "before_cursor_execute", seen)
    assert r.status_code == 200 and r.json()["prediction"]["recommended"]["vcpus"] == 1
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, selects
