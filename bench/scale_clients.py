"""The scale bench's clients (``scale.py``), and its ceiling: the same
clients against a do-nothing API under the same uvicorn, measured in the
same run, so that what the host and the clients allow is told apart from
what the product costs."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from benchlib import pct, r
from scale_service import API_WORKERS

T = TypeVar("T")
POLL_S = 1.0
REQUEST_TIMEOUT_S = 120.0


class Unfinished(Exception):
    """The level's time limit passed before this transition completed."""


# -- the clients --------------------------------------------------------------------------
@dataclass
class Level:
    n: int
    deadline: float = 0.0
    unfinished: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    to_predicted: list[float] = field(default_factory=list)
    to_completed: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0  # this process's CPU time: the clients' own share of the host

    async def call(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kw: Any
    ) -> httpx.Response:
        t0 = time.monotonic()
        resp = await client.request(method, url, **kw)
        self.latencies.setdefault(kind, []).append(time.monotonic() - t0)
        return resp


def run_clients(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop where it is installed, as the API's workers are: the clients'
    loop is then not the slower side of the measurement."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def poll_only(url: str, n: int, duration_s: float) -> tuple[Level, float]:
    """The ceiling's clients: N users polling once a second for ``duration_s``."""
    level = Level(n, deadline=time.monotonic() + duration_s)
    tls = ssl.create_default_context()

    async def user(i: int) -> None:
        await asyncio.sleep(POLL_S * i / n)  # users arrive over one poll interval
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, verify=tls) as c:
            while time.monotonic() < level.deadline:
                try:
                    resp = await level.call(c, "get", "GET", f"/transitions/{i:012d}")
                    resp.json()
                except httpx.HTTPError as exc:
                    level.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(POLL_S)

    return level, await timed(level, [user(i) for i in range(n)])


async def timed(level: Level, users: list[Coroutine[Any, Any, None]]) -> float:
    """Run the users together; the wall time, with their CPU time in ``level``."""
    t0 = time.monotonic()
    cpu0 = time.process_time()
    await asyncio.gather(*users)
    level.client_cpu_s = time.process_time() - cpu0
    return time.monotonic() - t0


def wait_up(proc: subprocess.Popen[Any], url: str, timeout_s: float, log: str) -> None:
    """Until ``url`` answers 200; SystemExit naming ``log`` if ``proc`` dies first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer; see {log}")
        time.sleep(0.2)


def ceiling_level(n: int, data_root: Path, duration_s: float = 30.0) -> dict[str, Any]:
    """The same N polling clients against ``scale_service.ceiling_app``: what
    this host (and these clients) allow any Python API, measured in this run."""
    port = free_port()
    log = (data_root / f"ceiling-{n}.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "scale_service:ceiling_app",
            "--factory",
            "--app-dir",
            str(Path(__file__).parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(API_WORKERS),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-keep-alive",
            "75",
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_up(proc, f"{url}/transitions/x", 60, log.name)
        level, wall = run_clients(poll_only(url, n, duration_s))
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    lat = level.latencies.get("get", [])
    return {
        "concurrent": n,
        "duration_s": duration_s,
        "api_requests": len(lat),
        "api_req_per_s": r(len(lat) / wall, 1),
        "api_p50_ms": r((pct(lat, 50) or 0) * 1000, 1),
        "api_p99_ms": r((pct(lat, 99) or 0) * 1000, 1),
        "errors": len(level.errors),
        "client_cpu_share": r(level.client_cpu_s / wall),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
