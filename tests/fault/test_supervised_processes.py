"""``kill -9`` of one process of ``vmshadow serve`` while transitions run.

The supervisor runs the API workers and the controller as processes of their
own (``ops/supervisor.py``). Killing one API worker leaves the others serving
and the controller driving; killing the controller leaves the API answering,
and the restarted controller takes the transitions over by lease. Nothing is
lost or duplicated: every transition completes once, with one VM and one
history record. Libvirt's test driver; the controller needs a built image.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_serve_ops import _free_port

from vmshadow.store.db import make_engine
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.subprocess, pytest.mark.libvirt]
BENCH = Path(__file__).resolve().parents[2] / "bench"
N = 6


class Served:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        (self.data / "user-images").mkdir(parents=True)
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                str(self.data / "user-images" / "tiny"),
                "64M",
            ],
            check=True,
        )
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VMSHADOW_")},
            "VMSHADOW_CONFIG": str(tmp / "none.toml"),
        }
        self.log = (tmp / "serve.log").open("w+b")
        # The scale bench's service: ``vmshadow serve``'s supervisor, API workers and
        # controller, with shadows replayed (the test driver runs no guest).
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "scale.py"),
                "--serve",
                str(self.data),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not up: {self.text()}")

    def text(self, whole: bool = False) -> str:
        self.log.flush()
        got = Path(self.log.name).read_text()
        return got if whole else got[-4000:]

    def supervisor_lines(self) -> str:
        return "\n".join(x for x in self.text(whole=True).splitlines() if "ops.supervisor" in x)

    def children(self) -> dict[str, int]:
        """The supervisor's children by role (``api`` or ``controller``) -> pids."""
        out = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        kids: dict[str, list[int]] = {}
        for line in out.splitlines():
            pid, _, args = line.strip().partition(" ")
            for role in ("api", "controller"):
                if f"--child {role}" in args:
                    kids.setdefault(role, []).append(int(pid))
        return {role: min(pids) for role, pids in kids.items()}

    def all_children(self) -> set[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return {int(x) for x in out.split()}

    @property
    def token(self) -> str:
        return (self.data / "api-token").read_text().strip()

    def call(self, method: str, path: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        self.log.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    kids: set[int] = set()
    try:
        s.wait_up()
        kids = s.all_children()
        yield s
    finally:
        kids |= s.all_children()
        s.stop()
        # The supervisor's stop stops every child: none outlives it.
        time.sleep(0.5)
        alive = [pid for pid in kids if _alive(pid)]
        assert alive == [], f"children left running: {alive}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _launch_all(s: Served, tag: str) -> list[str]:
    tids = []
    for i in range(N):
        body = {
            "vm_name": f"{tag}{i}",
            "profile": "smoke",
            "requested": {"vcpus": 1, "memory_mib": 512},
        }
        r = s.call("POST", "/transitions", json=body)
        assert r.status_code == 201, r.text
        tids.append(r.json()["id"])
    return tids


def _drive_to_completed(s: Served, tids: list[str], timeout: float = 240) -> None:
    """Confirm each as it is predicted; wait until all are completed (tolerating
    an API worker that is being restarted: the request is simply tried again)."""
    deadline = time.monotonic() + timeout
    pending = set(tids)
    while pending and time.monotonic() < deadline:
        for tid in sorted(pending):
            try:
                t = s.call("GET", f"/transitions/{tid}").json()
                if t["state"] == "predicted":
                    s.call("POST", f"/transitions/{tid}/confirm")
                elif t["state"] == "completed":
                    pending.discard(tid)
                else:
                    assert not t["terminal"], t
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    assert not pending, f"not completed: {pending}\n{s.text()}"


def _check_store(s: Served, tids: list[str], tag: str) -> None:
    store = Store(make_engine(f"sqlite:///{s.data / 'vmshadow.db'}"))
    rows = store.get_many(tids)
    assert sorted(rows) == sorted(tids)
    assert {r.state for r in rows.values()} == {"completed"}
    assert len({r.vm_name for r in rows.values()}) == N
    # One launch per transition: each reached launching and running exactly once.
    for tid in tids:
        states = [e.state for e in store.events(tid) if e.kind == "state"]
        assert states.count("launching") == 1 and states.count("running") == 1, states
        assert states.count("completed") == 1, states
    assert len(store.list_transitions(limit=100)) == N  # nothing created twice


def _wait_restarted(s: Served, role: str, old: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = s.children().get(role)
        if pid is not None and pid != old:
            return pid
        time.sleep(0.2)
    raise AssertionError(f"{role} not restarted: {s.text()}")


def test_kill_api_worker_alone(served: Served) -> None:
    s = served
    tids = _launch_all(s, "apik")
    controller = s.children()["controller"]
    api = s.children()["api"]
    os.kill(api, signal.SIGKILL)
    # The other worker answers on the same port at once.
    assert httpx.get(f"{s.base}/health", timeout=5).status_code == 200
    _wait_restarted(s, "api", api)
    _drive_to_completed(s, tids)
    assert s.children()["controller"] == controller  # the controller never stopped
    assert re.search(r"api-\d \(pid \d+\) exited with signal SIGKILL", s.supervisor_lines())
    _check_store(s, tids, "apik")


def test_kill_controller_alone(served: Served) -> None:
    s = served
    tids = _launch_all(s, "ctlk")
    # Wait until the controller holds some of them, then kill it mid-flight.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {s.call("GET", f"/transitions/{t}").json()["state"] for t in tids}
        if states - {"requested"}:
            break
        time.sleep(0.2)
    old = s.children()["controller"]
    os.kill(old, signal.SIGKILL)
    # The API keeps answering while no controller runs.
    for tid in tids:
        assert s.call("GET", f"/transitions/{tid}").status_code == 200
    _wait_restarted(s, "controller", old)
    _drive_to_completed(s, tids)
    assert re.search(r"controller \(pid \d+\) exited with signal SIGKILL", s.supervisor_lines())
    _check_store(s, tids, "ctlk")
