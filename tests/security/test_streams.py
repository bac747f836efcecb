"""Idle SSE streams are capped and cheap (issue 14, item 12).

500 idle streams used to be accepted and cost 96 % of a CPU (each polled the
database every 0.5 s). The service runs here under a real uvicorn on
127.0.0.1 in its own process, so its CPU time (from /proc) is its own: the
streams' cost is that time minus an idle window of the same length, measured
in the same run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.security, pytest.mark.subprocess, pytest.mark.libvirt]

STREAMS = 500  # the cap for this test: the figure
WINDOW_S = 10.0
# The goal: 5 % of one CPU (measured: about 0.5 %; the old code: 96 %).
MAX_CPU_SHARE = 0.05

SERVER = """
import sys
from pathlib import Path
import uvicorn
from vmshadow.config import load_settings
from vmshadow.server import build
data, port, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = load_settings(
    {("data_dir",): data, ("libvirt_uri",): "test:///default", ("api", "max_streams"): cap,
     ("api", "port"): port},
    config_path=Path(data) / "none.toml", environ={},
)
uvicorn.run(build(settings, with_controller=False).app, host="127.0.0.1", port=port,
            log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pid: int, seconds: float) -> float:
    start = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "data"), str(port), str(STREAMS)],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        token = (tmp_path / "data" / "api-token").read_text().strip()
        yield url, proc.pid, token
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def open_stream(port: int, tid: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"GET /api/v1/transitions/{tid}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "the service closed the stream"
        head += chunk
    return sock, head


def test_streams_are_capped_and_idle_ones_cost_little(server: tuple[str, int, str]) -> None:
    url, pid, token = server
    port = int(url.rsplit(":", 1)[1])
    created = httpx.post(
        f"{url}/api/v1/transitions",
        json={"vm_name": "web1", "requested": {"vcpus": 1, "memory_mib": 512}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    tid = created.json()["id"]

    idle = cpu_over(pid, WINDOW_S)
    socks: list[socket.socket] = []
    try:
        for _ in range(STREAMS):
            sock, head = open_stream(port, tid)
            socks.append(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
        over, head = open_stream(port, tid)
        socks.append(over)
        assert head.startswith(b"HTTP/1.1 503"), head[:200]
        body = json.loads(head.split(b"\r\n\r\n", 1)[1] or over.recv(65536))
        assert {"error", "field", "reason"} <= set(body) and "max_streams" in body["error"]
        time.sleep(1.0)  # let the openings settle: the cost measured is the idle one
        busy = cpu_over(pid, WINDOW_S)
        t0 = time.perf_counter()
        assert httpx.get(f"{url}/api/v1/health").status_code == 200
        health_ms = (time.perf_counter() - t0) * 1000
        share = (busy - idle) / WINDOW_S
        print(
            f"\n{STREAMS} idle streams: {busy:.2f} s CPU in {WINDOW_S:.0f} s "
            f"(idle service {idle:.2f} s): {share:.1%} of one CPU; /health {health_ms:.0f} ms"
        )
        assert share < MAX_CPU_SHARE
    finally:
        for s in socks:
            s.close()
    # Closed streams give their slots back.
    deadline = time.monotonic() + 30
    while True:
        sock, head = open_stream(port, tid)
        sock.close()
        if head.startswith(b"HTTP/1.1 200"):
            break
        assert time.monotonic() < deadline, "closed streams kept their slots"
        time.sleep(0.5)


def test_streams_share_one_poller_and_get_what_happens_later(
    server: tuple[str, int, str], tmp_path: Path
) -> None:
    """Two streams of one transition both receive what is written after they opened
    (the shared poller's fan-out), each item once, and then the end."""
    from vmshadow.domain.samples import Source, UsagePoint
    from vmshadow.store.db import make_engine
    from vmshadow.store.repository import Store

    url, _pid, token = server
    auth = {"Authorization": f"Bearer {token}"}
    body = {"vm_name": "web1", "requested": {"vcpus": 1, "memory_mib": 512}}
    tid = httpx.post(f"{url}/api/v1/transitions", json=body, headers=auth).json()["id"]
    # The same database the service uses, as the controller would write it.
    store = Store(make_engine(f"sqlite:///{tmp_path / 'data' / 'vmshadow.db'}"))
    point = UsagePoint(1.0, Source.HOST, "cpu", 0.5, None, 3.0, 4.0, 0.0, 0.0)
    stream_url = f"{url}/api/v1/transitions/{tid}/stream"
    texts: list[str] = []
    with (
        httpx.Client(timeout=30) as a,
        httpx.Client(timeout=30) as b,
        a.stream("GET", stream_url) as one,
        b.stream("GET", stream_url) as two,
    ):
        lines = [one.iter_lines(), two.iter_lines()]
        # Each stream's first message (up to its blank line) is the history's event.
        first = ["\n".join(iter(it.__next__, "")) for it in lines]
        assert all("event: event" in msg for msg in first), first
        # Written only once both streams have their history: the rounds bring it.
        store.add_samples(tid, "shadow", 0, [point])
        assert httpx.post(f"{url}/api/v1/transitions/{tid}/cancel", headers=auth).is_success
        for it, head in zip(lines, first, strict=True):
            texts.append(head + "\n" + "\n".join(it))
    for text in texts:
        assert text.count("event: sample") == 1 and '"iops": 7.0' in text
        assert text.count('"state": "requested"') == 1  # the history, not repeated
        assert '"state": "cancelled"' in text and "event: end" in text
