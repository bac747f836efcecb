"""Control-plane scale: 10, 100 and 1,000 concurrent transitions through the
real API and controller, on libvirt's test driver (a host file sized for the
largest level).

Each level gets a fresh service process (``--serve``: the real app and
controller, uvicorn on 127.0.0.1, SQLite in a private data folder) and N
concurrent clients over HTTP. Each client does what a user does: create a
launch (of a tiny qcow2 user image), poll until ``predicted``, confirm, poll
until ``completed`` (polling once a second; observation is cut to 1 s).
Figures per level: throughput (transitions completed per second), API
requests served per second, p50 and p99 API latency (all calls, and per
call), request -> predicted and request -> completed. Baseline, measured in
the same run: one transition alone (N=1).

What the test driver cannot run is the shadow itself (it has no guests, so no
agent): the controller's ``ShadowSession`` is replaced, in the service
process only, by ``ReplayShadow`` (given through the controller's
shadow-session factory), which starts and destroys the transient
shadow domain on the test driver like the real session and replays host and
guest samples with the figures of a real smoke run (README) at once, instead
of measuring them. Everything else is the product's code: API, service,
store, controller threads and leases, pending-VM define, predictor, launch,
observation, history. Shadow boot and profiling times are what
``bench/recommend.py`` measures.

    .venv/bin/python bench/scale.py [--levels 10,100,1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchlib import (
    Machine,
    bench_settings,
    default_settings,
    pct,
    private_data_dir,
    r,
    report,
    table,
)
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.shadow.profiling import PhaseRun
from vmshadow.shadow.session import ShadowSession

POLL_S = 1.0
REQUEST_TIMEOUT_S = 120.0
IMAGE_NAME = "tiny"  # the 64 MiB user image in each level's store
HOST_CPUS, HOST_MEMORY_MIB = 4096, 2**20  # room for 1,000 launched VMs of 2 vCPU, 512 MiB


class Unfinished(Exception):
    """The level's time limit passed before this transition completed."""


# Host view of a real smoke run on the README's machine: busy vCPUs, MiB, IOPS.
SMOKE_FIGURES = {"cpu": (1.0, 38.0, 2.0), "memory": (1.0, 292.0, 1.0), "io": (0.9, 41.0, 4752.0)}


class ReplayShadow(ShadowSession):
    """A shadow for a driver without guests: the domain is real, the samples replayed."""

    def _boot(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=False)
        self.record.timings.prepared_s = self._elapsed()
        self._hv.start_shadow(self.spec, scratch_cache=self._scratch_cache)
        self.record.timings.boot_s = self._elapsed()
        self.record.timings.agent_ready_s = self._elapsed()

    def run_phase(
        self,
        spec: PhaseSpec,
        *,
        deadline: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseRun:
        started = self._elapsed()
        busy, mem, iops = SMOKE_FIGURES.get(spec.phase_id, (0.5, 100.0, 100.0))
        for n in range(spec.duration_s):
            for source in (Source.HOST, Source.GUEST):
                self._add_point(
                    UsagePoint(
                        t=started + n + 1,
                        source=source,
                        phase_id=spec.phase_id,
                        busy_vcpus=busy,
                        mem_used_mib=mem,
                        read_iops=iops / 2,
                        write_iops=iops / 2,
                        read_bps=iops * 2048,
                        write_bps=iops * 2048,
                    )
                )
        run = PhaseRun(spec=spec, started_s=started, ended_s=self._elapsed(), result={})
        self.record.phases.append(run)
        return run


def serve(data_dir: Path, port: int) -> None:
    """The service process of one level (run by the parent with ``--serve``)."""
    import uvicorn

    from vmshadow.server import build

    # A test-driver host big enough for the largest level's VMs (test:///default
    # has 3 GiB: six launched VMs fill it, and the rest would wait for room).
    host_xml = data_dir / "host.xml"
    host_xml.write_text(
        "<node><cpu><mhz>2000</mhz><model>bench</model><nodes>1</nodes><sockets>1</sockets>"
        f"<cores>{HOST_CPUS}</cores><threads>1</threads></cpu>"
        f"<memory>{HOST_MEMORY_MIB * 1024}</memory></node>\n"
    )
    settings = bench_settings(
        data_dir,
        default_settings(),
        libvirt_uri=f"test://{host_xml}",
        accelerator="tcg",
        controller__observe_s=1,
        controller__refine_rounds=0,
        controller__phase_s=2,
        quotas__max_active_transitions=100_000,
        api__port=port,
    )
    # A test:///<file> host lives in the connection that opened it: the
    # service's host pool holds that one connection for API and controller.
    svc = build(settings)
    assert svc.controller is not None
    # The controller starts with the app (its lifespan): set before uvicorn runs.
    svc.controller.shadow_session = ReplayShadow
    # Keep-alive longer than the clients' poll: with uvicorn's 5 s default a
    # client may reuse a connection the server is closing (an httpx
    # ReadError that says nothing about the control plane).
    uvicorn.run(svc.app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=120)


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

    async def call(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kw: Any
    ) -> httpx.Response:
        t0 = time.monotonic()
        resp = await client.request(method, url, **kw)
        self.latencies.setdefault(kind, []).append(time.monotonic() - t0)
        return resp


async def _wait(level: Level, client: httpx.AsyncClient, tid: str, want: str) -> dict[str, Any]:
    while True:
        resp = await level.call(client, "get", "GET", f"/transitions/{tid}")
        t = resp.json()
        if t["state"] == want:
            return dict(t)
        if t["terminal"]:
            raise RuntimeError(f"{tid} ended {t['state']}: {t['reason']}")
        if time.monotonic() > level.deadline:
            raise Unfinished(t["state"])
        await asyncio.sleep(POLL_S)


async def _one(level: Level, client: httpx.AsyncClient, i: int, tag: str, image: str) -> None:
    t0 = time.monotonic()
    try:
        body = {
            "vm_name": f"scale-{tag}-{i}",
            "profile": "smoke",
            "image": image,
            "requested": {"vcpus": 1, "memory_mib": 512},
        }
        resp = await level.call(client, "create", "POST", "/transitions", json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"create: {resp.status_code} {resp.text[:200]}")
        tid = resp.json()["id"]
        await _wait(level, client, tid, "predicted")
        level.to_predicted.append(time.monotonic() - t0)
        resp = await level.call(client, "confirm", "POST", f"/transitions/{tid}/confirm")
        if resp.status_code != 200:
            raise RuntimeError(f"confirm: {resp.status_code} {resp.text[:200]}")
        await _wait(level, client, tid, "completed")
        level.to_completed.append(time.monotonic() - t0)
    except Unfinished:
        level.unfinished += 1
    except (RuntimeError, httpx.HTTPError) as exc:
        level.errors.append(f"{type(exc).__name__}: {exc}")


async def drive(url: str, token: str, n: int, image: str, limit_s: float) -> tuple[Level, float]:
    # Each client stops at the deadline by itself: cancelling a thousand
    # requests in flight is slower and less certain than letting them end.
    level = Level(n, deadline=time.monotonic() + limit_s)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT_S,
        limits=limits,
    ) as client:
        tag = uuid.uuid4().hex[:6]
        t0 = time.monotonic()
        await asyncio.gather(*(_one(level, client, i, tag, image) for i in range(n)))
        wall = time.monotonic() - t0
    return level, wall


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_level(n: int, data_root: Path, image: Path, limit_s: float = 3600) -> dict[str, Any]:
    data_dir = data_root / f"n{n}"
    data_dir.mkdir()
    # Transitions name images in the service's store, never a host path.
    (data_dir / "user-images").mkdir()
    shutil.copyfile(image, data_dir / "user-images" / IMAGE_NAME)
    port = _free_port()
    log = (data_root / f"serve-{n}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "VMSHADOW_CONFIG": "/nonexistent"},
    )
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start; see {log.name}")
            time.sleep(0.3)
        token = (data_dir / "api-token").read_text().strip()
        level, wall = asyncio.run(drive(url, token, n, IMAGE_NAME, limit_s))
    finally:
        proc.terminate()
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    every = [x for v in level.latencies.values() for x in v]
    done = len(level.to_completed)
    row: dict[str, Any] = {
        "concurrent": n,
        "completed": done,
        "unfinished_at_limit": level.unfinished,
        "errors": len(level.errors),
        "wall_s": r(wall, 1),
        "transitions_per_s": r(done / wall),
        "api_requests": len(every),
        "api_req_per_s": r(len(every) / wall, 1),
        "api_p50_ms": r((pct(every, 50) or 0) * 1000, 1),
        "api_p99_ms": r((pct(every, 99) or 0) * 1000, 1),
    }
    for kind in ("create", "get", "confirm"):
        row[f"{kind}_p99_ms"] = r((pct(level.latencies.get(kind, []), 99) or 0) * 1000, 1)
    row["to_predicted_p50_s"] = r(pct(level.to_predicted, 50))
    row["to_completed_p50_s"] = r(pct(level.to_completed, 50))
    row["to_completed_max_s"] = r(max(level.to_completed, default=0))
    row["first_errors"] = level.errors[:3]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="10,100,1000", help="concurrent transitions per level")
    ap.add_argument("--quick", action="store_true", help="levels 10 and 100 only")
    ap.add_argument(
        "--level-limit-s",
        type=float,
        default=600,
        help="stop a level after this long; throughput counts what completed by then",
    )
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    # A TERM to this process still stops the service processes (finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [10, 100] if args.quick else [int(x) for x in args.levels.split(",")]
    machine = Machine("n/a (libvirt test driver)", "libvirt's test driver: no guests run")
    rows = []
    with private_data_dir(default_settings()) as root:
        # A tiny user image, not the built-in one: a pending built-in VM
        # reserves a 1 GiB scratch disk when it is defined, so 1,000 of them
        # would measure the host's free disk, not the control plane.
        image = root / "user-image.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
        for n in [1, *levels]:  # N=1: the baseline
            print(f"{n} concurrent transition(s)...", flush=True)
            rows.append(run_level(n, root, image, args.level_limit_s))
            if rows[-1]["first_errors"]:
                print(f"  errors: {rows[-1]['first_errors']}", flush=True)
    print()
    table(
        rows,
        [
            "concurrent",
            "completed",
            "unfinished_at_limit",
            "errors",
            "wall_s",
            "transitions_per_s",
            "api_req_per_s",
            "api_p50_ms",
            "api_p99_ms",
            "create_p99_ms",
            "confirm_p99_ms",
            "to_predicted_p50_s",
            "to_completed_p50_s",
        ],
    )
    print(
        "(concurrent=1 is the baseline; clients poll once a second, observation lasts 1 s, "
        "the shadow's samples are replayed)"
    )
    report(
        "scale",
        machine,
        {"levels": levels, "poll_s": POLL_S, "level_limit_s": args.level_limit_s},
        {"levels": rows},
    )


if __name__ == "__main__":
    main()
