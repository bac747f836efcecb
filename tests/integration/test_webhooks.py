"""Webhooks against a receiver on loopback, on the store's real path (SQLite,
libvirt's test driver for the service): signature, order, retries, refusals,
the cursor across restarts and one deliverer per data folder."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.ops.settings import WebhookSettings
from vmshadow.ops.webhooks import WebhookDeliverer, signature
from vmshadow.server import Service

pytestmark = pytest.mark.libvirt
S = TransitionState


class Receiver:
    """An HTTP server on 127.0.0.1 that records what it gets and answers with
    the statuses it is told, in order (then 204)."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        give_up = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < give_up:
            time.sleep(0.05)
        return self.got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {("data_dir",): str(tmp_path), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )


def hooks(url: str, **kw: Any) -> WebhookSettings:
    return WebhookSettings(url=url, retry_base_s=0.05, **kw)


def create(svc: Service, name: str = "web1") -> str:
    row = svc.store.create_transition(
        kind=TransitionKind.LAUNCH,
        vm_name=name,
        profile="smoke",
        load=None,
        requested=Allocation(2, 2048),
    )
    return row.id


def to_predicted(svc: Service, tid: str) -> None:
    st = svc.store
    st.advance(tid, S.SHADOWING, "shadowing")
    st.advance(tid, S.PROFILING, "profiling")
    st.add_prediction(
        tid, Prediction("physical", "x", 0, 1.2, Requirement(0.5, 300, 10), Allocation(1, 512))
    )
    st.advance(tid, S.PREDICTED, "prediction ready: 1 vCPU, 512 MiB")


def test_signed_deliveries_in_order_of_the_chosen_states(
    svc: Service, settings: Settings, receiver: Receiver
) -> None:
    d = WebhookDeliverer(hooks(receiver.url), svc.store, settings.data_dir)
    assert d.start()
    try:
        tid = create(svc)
        to_predicted(svc, tid)  # shadowing and profiling are not sent by default
        svc.store.advance(tid, S.FAILED, "the shadow could not boot")
        got = receiver.wait_for(2)
    finally:
        d.stop()
    assert [json.loads(g["body"])["type"] for g in got] == [
        "transition.predicted",
        "transition.failed",
    ]
    secret = (settings.data_dir / "webhook-secret").read_text().strip()
    assert (settings.data_dir / "webhook-secret").stat().st_mode & 0o777 == 0o600
    for g in got:
        h = {k.lower(): v for k, v in g["headers"].items()}
        want = signature(secret, h["x-vmshadow-timestamp"], g["body"])
        assert hmac.compare_digest(h["x-vmshadow-signature"], want)
        doc = json.loads(g["body"])
        assert doc["transition"]["id"] == tid and doc["delivery"] == h["x-vmshadow-delivery"]
    # A receiver checks the way the docs say: HMAC-SHA256 over "TIMESTAMP.BODY".
    h = {k.lower(): v for k, v in got[0]["headers"].items()}
    mac = hmac.new(secret.encode(), f"{h['x-vmshadow-timestamp']}.".encode() + got[0]["body"],
                   hashlib.sha256).hexdigest()  # fmt: skip
    assert h["x-vmshadow-signature"] == f"sha256={mac}"


def test_a_failing_receiver_gets_the_same_delivery_again_then_the_next(
    svc: Service, settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    d = WebhookDeliverer(hooks(receiver.url), svc.store, settings.data_dir)
    assert d.start()
    try:
        tid = create(svc)
        to_predicted(svc, tid)
        svc.store.advance(tid, S.CANCELLED, "cancelled by the user")
        svc.store.advance(create(svc, "web2"), S.FAILED, "no host")
        got = receiver.wait_for(4)
    finally:
        d.stop()
    ids = [g["headers"]["X-Vmshadow-Delivery"] for g in got]
    assert ids[0] == ids[1] == ids[2] != ids[3]  # two failures, then delivered; in order
    assert d.delivered == 2 and d.given_up == 0


def test_a_refusal_is_not_retried(svc: Service, settings: Settings, receiver: Receiver) -> None:
    receiver.statuses = [400]
    d = WebhookDeliverer(hooks(receiver.url), svc.store, settings.data_dir)
    assert d.start()
    try:
        svc.store.advance(create(svc), S.FAILED, "x")
        svc.store.advance(create(svc, "web2"), S.FAILED, "y")
        got = receiver.wait_for(2)
    finally:
        d.stop()
    assert len(got) == 2 and d.given_up == 1 and d.delivered == 1
    assert json.loads(got[1]["body"])["message"] == "y"


def test_a_restart_goes_on_from_the_cursor_and_one_process_delivers(
    svc: Service, settings: Settings, receiver: Receiver
) -> None:
    first = WebhookDeliverer(hooks(receiver.url), svc.store, settings.data_dir)
    assert first.start()
    second = WebhookDeliverer(hooks(receiver.url), svc.store, settings.data_dir)
    assert not second.start()  # the folder's lock is held: it delivers nothing
    second.stop()
    svc.store.advance(create(svc), S.FAILED, "before the restart")
    receiver.wait_for(1)
    first.stop()
    # Down: what happens now is delivered by the next start, from the cursor.
    svc.store.advance(create(svc, "web2"), S.FAILED, "while down")
    again = WebhookDeliverer(hooks(receiver.url), svc.store, settings.data_dir)
    assert again.start()
    try:
        got = receiver.wait_for(2)
    finally:
        again.stop()
    assert [json.loads(g["body"])["message"] for g in got] == ["before the restart", "while down"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://127.0.0.1/x", "http:// or https://"),
        ("http:///nohost", "with a host"),
        ("https://user:pw@127.0.0.1/x", "credentials"),
    ],
)
def test_a_bad_url_is_refused_naming_the_setting(tmp_path: Path, url: str, why: str) -> None:
    from vmshadow.domain.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_settings(
            {("data_dir",): str(tmp_path), ("webhooks", "url"): url},
            config_path=tmp_path / "none.toml",
            environ={},
        )
    assert "webhooks.url" in str(err.value) and why in str(err.value)
