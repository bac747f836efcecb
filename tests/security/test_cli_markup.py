"""Text from the service is printed as text (issue 14, item 17): an image named
``/tmp/[/oops]`` crashed ``vmshadow show`` with Rich's ``MarkupError``, and
``[blink red]`` restyled a path. The CLI runs here against a stand-in of the
API on loopback that answers with hostile strings in every free-text field.
It also shows when an undecided prediction's decision expires."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from vmshadow.cli.main import app
from vmshadow.cli.views import (
    decision_deadline,
    detail_table,
    events_table,
    list_table,
    prediction_notes,
    prediction_table,
    warning_lines,
)

pytestmark = pytest.mark.security

CLOSE = "/tmp/[/oops]"  # an unmatched closing tag: MarkupError
STYLE = "[blink red]/srv/x[/]"  # a style that must stay text
SIZE = {"vcpus": 2, "memory_mib": 1024, "iops": None}


def _doc(state: str = "predicted", **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    doc: dict[str, Any] = {
        "id": "t-1",
        "kind": "launch",
        "vm_name": "web1",
        "profile": "smoke",
        "load": None,
        "state": state,
        "terminal": state in ("failed", "cancelled", "completed"),
        "image": CLOSE,
        "reason": STYLE,
        "created_at": now,
        "requested": SIZE,
        "recommended": SIZE,
        "final": SIZE if state == "running" else None,
        "decision": "prediction" if state == "running" else None,
        "prediction": {
            "label": f"label {CLOSE}",
            "history_size": 0,
            "need": {"vcpus": 1.0, "memory_mib": 500, "iops": 1},
            "margin": 1.2,
        },
        "events": [
            {"id": 1, "at": now, "kind": "state", "state": state, "message": f"msg {STYLE}"},
            {"id": 2, "at": now, "kind": "error", "state": None, "message": CLOSE},
        ],
    }
    doc.update(extra)
    return doc


class _FakeApi(BaseHTTPRequestHandler):
    """Answers as /api/v1 would, from ``server.docs``; confirming launches it."""

    server: Any

    def _send(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        doc = self.server.doc
        if self.path.startswith("/api/v1/transitions?"):
            self._send([doc])
        elif self.path == "/api/v1/transitions/t-1":
            self._send(doc)
        else:
            self._send({"error": "not found"}, 404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        doc = self.server.doc
        if self.path.endswith("/override/review"):
            warning = {"resource": "vcpus", "severity": "below-margin", "message": STYLE}
            self._send({"warnings": [warning], "needs_acknowledgement": False})
        elif self.path.endswith("/confirm"):
            self.server.doc = {**doc, "state": "running", "final": SIZE, "decision": "prediction"}
            self._send(self.server.doc)
        else:
            self._send({"error": "not found"}, 404)

    def log_message(self, *_a: object) -> None:
        pass


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    server.doc = _doc()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("VMSHADOW_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("VMSHADOW_TOKEN", "t" * 32)
    monkeypatch.setenv("COLUMNS", "300")
    yield server
    server.shutdown()
    server.server_close()


def cli(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(app, list(args))


def test_show_prints_hostile_api_text_verbatim(api: ThreadingHTTPServer) -> None:
    expires = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    api.doc = _doc(decision_expires_at=expires)  # type: ignore[attr-defined]
    r = cli("show", "t-1")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert CLOSE in r.stdout and STYLE in r.stdout and f"msg {STYLE}" in r.stdout
    local = datetime.fromisoformat(expires).astimezone().strftime("%H:%M")
    assert f"decide by {local} (local time), or it is cancelled" in r.stdout


def test_show_without_the_deadline_field_still_works(api: ThreadingHTTPServer) -> None:
    r = cli("show", "t-1")  # an older service: no decision_expires_at at all
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert "decide by" not in r.stdout


def test_ls_prints_hostile_names_verbatim(api: ThreadingHTTPServer) -> None:
    api.doc = _doc(vm_name=STYLE, profile=CLOSE)  # type: ignore[attr-defined]
    r = cli("ls")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    row = r.stdout.splitlines()[1].split("\t")
    assert row[1] == STYLE and row[3] == CLOSE


def test_ls_through_a_pipe_keeps_each_transition_on_one_line(
    api: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A narrow terminal width must not matter when stdout is not a terminal:
    # `vmshadow ls | grep NAME` once found nothing because names wrapped.
    monkeypatch.setenv("COLUMNS", "40")
    name = "a-long-vm-name-" + "x" * 48
    api.doc = _doc(vm_name=name, profile="bad\tprofile\nname")  # type: ignore[attr-defined]
    r = cli("ls")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    (line,) = [ln for ln in r.stdout.splitlines() if name in ln]
    assert line.split("\t")[:5] == ["t-1", name, "launch", "bad profile name", "predicted"]
    assert len(r.stdout.splitlines()) == 2 and "sizes:" not in r.stdout


def test_attach_decision_prompt_shows_the_deadline_and_hostile_warnings(
    api: ThreadingHTTPServer,
) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    api.doc = _doc(decision_expires_at=expires, vm_name=STYLE)  # type: ignore[attr-defined]
    r = cli("attach", "t-1", "--yes")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert r.stdout.startswith(f"following transition t-1: launch {STYLE}, predicted\n")
    local = datetime.fromisoformat(expires).astimezone()
    assert f"decide by {local:%H:%M}" in r.stdout and "(local time), or it is cancelled" in r.stdout
    assert f"warning: if run as requested: {STYLE}" in r.stdout
    assert f"done: VM {STYLE} running with" in r.stdout


def test_a_failure_reason_with_markup_is_printed_as_text(api: ThreadingHTTPServer) -> None:
    api.doc = _doc(state="failed", reason=CLOSE)  # type: ignore[attr-defined]
    r = cli("attach", "t-1")
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    assert f"failed: transition t-1: {CLOSE}" in r.stdout


def test_every_view_renders_markup_as_text() -> None:
    console = Console(record=True, width=400, color_system="truecolor")
    doc = _doc(state="predicted", kind=STYLE, profile=CLOSE, resize_mode=CLOSE)
    doc["kind"] = "resize"
    doc["prediction"]["confidence"] = {
        "risk": 3,
        "drivers": [f"driver {STYLE}"],
        "intervals": None,
        "contention": {"max_wait": 0.2, "limit": 0.1, "contended_phases": [f"phase {CLOSE}"]},
    }
    review = {"warnings": [{"resource": "vcpus", "severity": "x", "message": STYLE}]}
    for renderable in (
        detail_table(doc),
        list_table([doc]),
        prediction_table(doc, review),
        events_table(doc),
        *prediction_notes(doc),
        *warning_lines(review, CLOSE),
    ):
        console.print(renderable)
    text = console.export_text()
    assert CLOSE in text and STYLE in text
    assert f"driver {STYLE}" in text and f"phase {CLOSE}" in text
    assert "\x1b[5m" not in console.export_text(styles=True)  # no blink came through


def test_the_deadline_names_the_day_when_it_is_not_today() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    doc = {"state": "predicted", "decision_expires_at": "2026-01-03T12:00:00Z"}
    line = decision_deadline(doc, now=now)
    assert line is not None and " on " in line and line.endswith("or it is cancelled")
    assert decision_deadline({**doc, "decision_expires_at": None}) is None
    assert decision_deadline({**doc, "decision_expires_at": "not a time"}) is None
    assert decision_deadline({**doc, "state": "running"}) is None
