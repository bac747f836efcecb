"""The client commands (launch, attach, ls, show, cancel, resize) against the real
API app served by uvicorn on loopback, on libvirt's test driver.

The controller needs real shadows, so a small thread plays its part in the
store (the same calls the controller makes: advance, add samples, add a
prediction, confirm a fast launch); the real controller behind the same CLI is
covered by tests/e2e/test_cli_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sse_starlette.sse import AppStatus
from typer.testing import CliRunner, Result

from vmshadow.cli import app
from vmshadow.config import Settings, load_settings
from vmshadow.controller.service import TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionState
from vmshadow.server import Service, build
from vmshadow.store.repository import Store

pytestmark = pytest.mark.libvirt
S = TransitionState
NEED = Requirement(3.4, 900, 100)
REC = Allocation(4, 1280, 120)


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


@pytest.fixture
def svc(settings: Settings) -> Service:
    return build(settings, with_controller=False)


@pytest.fixture
def url(svc: Service) -> Iterator[str]:
    """The real app on a free loopback port, as `vmshadow serve` runs it."""
    # sse-starlette keeps one process-wide exit event bound to the first event
    # loop that used it; each test's server has its own loop (its README's advice).
    AppStatus.should_exit_event = None
    server = uvicorn.Server(
        uvicorn.Config(svc.app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(autouse=True)
def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI finds the token in the data folder, as a user on the service's host does.
    for var in [v for v in os.environ if v.startswith("VMSHADOW_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(settings.data_dir / "none.toml"))
    monkeypatch.setenv("COLUMNS", "200")


class StandIn:
    """Moves transitions through the store as the controller would."""

    def __init__(self, settings: Settings, store: Store, need: Requirement, rec: Allocation):
        self.service = TransitionService(settings, store)
        self.store, self.need, self.rec = store, need, rec
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stop.wait(0.05):
            for row in self.store.unfinished():
                state = S(row.state)
                if state is S.REQUESTED:
                    self._predict(row.id)
                elif state is S.PREDICTED and row.fast_launch:
                    self.service.fast_launch(row.id)
                elif state is S.LAUNCHING:
                    self.store.advance(
                        row.id, S.RUNNING, f"VM {row.vm_name} started", expect=[S.LAUNCHING]
                    )

    def _predict(self, tid: str) -> None:
        st = self.store
        st.advance(tid, S.SHADOWING, "shadowing", expect=[S.REQUESTED])
        st.advance(
            tid, S.PROFILING, "shadow ready after 6.0 s (tcg); profiling", expect=[S.SHADOWING]
        )
        points = [
            UsagePoint(t, Source.HOST, "cpu", 0.9, 300.0, 10.0, 5.0, 0.0, 0.0) for t in (1, 2, 3)
        ]
        st.add_samples(tid, "shadow", 0, points)
        pred = Prediction("physical", "physical extrapolation", 0, 1.2, self.need, self.rec)
        st.add_prediction(tid, pred)
        st.advance(tid, S.PREDICTED, "predicted", expect=[S.PROFILING])


@pytest.fixture
def stand_in(settings: Settings, svc: Service) -> Iterator[StandIn]:
    with StandIn(settings, svc.store, NEED, REC) as s:
        yield s


def cli(*args: str, url: str | None = None, input: str | None = None) -> Result:
    env = {"VMSHADOW_URL": url} if url else {}
    return CliRunner(mix_stderr=False).invoke(app, list(args), input=input, env=env)


def api_get(url: str, path: str) -> object:
    return httpx.get(f"{url}/api/v1{path}", timeout=10).json()


LAUNCH = ("launch", "web1", "--profile", "smoke", "--load", "200")


def test_launch_override_below_the_need_asks_to_accept_the_risk(
    url: str, stand_in: StandIn
) -> None:
    # o = override; 2 vCPUs; 1280 MiB; IOPS: keep the recommended; yes, accept the risk.
    r = cli(*LAUNCH, "--cpus", "2", "--memory", "2G", url=url, input="o\n2\n1280\n\ny\n")
    assert r.exit_code == 0, r.stdout + r.stderr
    out = r.stdout
    assert "Launch with the recommendation? [Y/n/o]" in out
    # The table: requested vs recommended, with the finding, then the service's warnings.
    assert "recommended (x1.2)" in out and "under-provisioned" in out
    assert "if run as requested: predicted P95 3.4 vCPU > 2 chosen: expect CPU contention" in out
    assert "vCPUs [4]" in out and "memory (MiB, or e.g. 4G) [1280]" in out
    assert "is below the predicted need. Launch anyway, accepting the risk? [y/N]" in out
    assert "done: VM web1 running with 2 vCPU, 1280 MiB, 120 IOPS (override)" in out
    (t,) = api_get(url, "/transitions")  # type: ignore[misc]
    assert t["decision"] == "override" and t["state"] == "running"
    assert t["final"] == {"vcpus": 2, "memory_mib": 1280, "iops": 120}
    assert t["confirmation"]["risk_acknowledged"] is True


def test_declining_an_override_asks_again_then_confirms(url: str, stand_in: StandIn) -> None:
    # o, 4 vCPU 2048 MiB no cap -> no risk, but say no; back to the question: yes.
    r = cli(*LAUNCH, url=url, input="o\n4\n2G\nnone\nn\ny\n")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.count("Launch with the recommendation? [Y/n/o]") == 2
    assert "Launch with 4 vCPU, 2048 MiB? [Y/n]" in r.stdout
    (t,) = api_get(url, "/transitions")  # type: ignore[misc]
    assert t["decision"] == "prediction" and t["final"] == REC.as_dict()


def test_answering_no_cancels(url: str, stand_in: StandIn) -> None:
    r = cli(*LAUNCH, url=url, input="n\n")
    assert r.exit_code == 1
    assert "declined" in r.stdout
    (t,) = api_get(url, "/transitions")  # type: ignore[misc]
    assert t["state"] == "cancelled" and t["final"] is None


def test_yes_json_prints_the_api_document(url: str, stand_in: StandIn) -> None:
    r = cli(*LAUNCH, "--yes", "--json", url=url)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout holds the document alone
    assert doc == api_get(url, f"/transitions/{doc['id']}")
    assert doc["state"] == "running" and doc["decision"] == "prediction"
    assert "--yes: accepting the recommendation" in r.stderr and "recommended" in r.stderr


def test_fast_launch_does_not_ask(url: str, stand_in: StandIn) -> None:
    r = cli(*LAUNCH, "--fast", "--json", url=url, input="")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["decision"] == "fast_launch" and doc["state"] == "running"
    assert "[Y/n/o]" not in r.stderr


@pytest.mark.subprocess
def test_no_answer_leaves_the_decision_open(url: str, stand_in: StandIn) -> None:
    # A real closed stdin (CliRunner would read it as Enter, i.e. the default).
    proc = subprocess.run(
        [sys.executable, "-m", "vmshadow.cli", *LAUNCH],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={**os.environ, "VMSHADOW_URL": url},
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    (t,) = api_get(url, "/transitions")  # type: ignore[misc]
    assert t["state"] == "predicted"
    assert f"vmshadow attach {t['id']}" in proc.stderr and "Traceback" not in proc.stderr
    # ...and attach picks it up where it waits.
    r = cli("attach", t["id"], "--yes", url=url)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert api_get(url, f"/transitions/{t['id']}")["state"] == "running"  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cpus", "0"), "error: --cpus: Input should be greater than or equal to 1"),
        (("--cpus", "9"), "error: --cpus: 9 is above the quota of 8"),
        (("--memory", "lots"), "error: --memory: 'lots' is not a size like 4G, 512M or 2048"),
        (("--memory", "100G"), "error: --memory: 102400 MiB is more than the host's"),
        (("--profile", "nope"), "error: --profile: unknown profile 'nope'"),
        (("--image", "/etc/shadow"), "error: --image: '/etc/shadow' is not an image name"),
        (("--at", "tomorrow"), "error: --at: Input should be a valid datetime"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(
    url: str, args: tuple[str, ...], message: str
) -> None:
    r = cli("launch", "web1", "--profile", "smoke", *args, url=url)
    assert r.exit_code == 1
    assert r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert api_get(url, "/transitions") == []  # nothing half-created


def test_bad_name_and_existing_domain(url: str) -> None:
    r = cli("launch", "Bad Name", "--profile", "smoke", url=url)
    assert r.exit_code == 1 and r.stderr.startswith("error: NAME: 'Bad Name' is not a valid")
    r = cli("launch", "test", "--profile", "smoke", url=url)  # the test driver's own domain
    assert r.exit_code == 1
    assert r.stderr.startswith("error: NAME: a domain named 'test' already exists"), r.stderr


def test_ls_show_cancel(
    url: str, svc: Service, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli("ls", url=url)
    assert r.exit_code == 0 and "no transitions" in r.stdout
    created = httpx.post(
        f"{url}/api/v1/transitions",
        json={
            "vm_name": "db1",
            "profile": "oltp",
            "load": 100,
            "requested": {"vcpus": 2, "memory_mib": 2048},
        },
        headers={"Authorization": f"Bearer {svc.token}"},
    ).json()
    tid = created["id"]
    # Without --url or VMSHADOW_URL the CLI goes where `vmshadow serve` listens.
    monkeypatch.setenv("VMSHADOW_API_PORT", url.rsplit(":", 1)[1])
    r = cli("ls", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == api_get(url, "/transitions")
    r = cli("ls")
    assert tid in r.stdout and "db1" in r.stdout and "requested" in r.stdout
    assert "2/2048/-" in r.stdout and "oltp@100" in r.stdout
    r = cli("ls", "--state", "cancelled")
    assert "no transitions in state cancelled" in r.stdout
    r = cli("show", tid, "--json")
    assert json.loads(r.stdout) == api_get(url, f"/transitions/{tid}")
    r = cli("show", tid)
    assert r.exit_code == 0 and "timeline" in r.stdout and "oltp at load 100" in r.stdout
    assert "placement" not in r.stdout  # nothing placed yet
    svc.store.update_fields(tid, shadow_host="a", vm_host="b", placement="on b, the freest host")
    r = cli("show", tid)
    assert "shadow on a; VM on b, the freest host" in r.stdout
    r = cli("cancel", tid, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["state"] == "cancelled"
    r = cli("cancel", tid)
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: transition {tid} is already cancelled"


def test_unknown_id_and_bad_state(url: str) -> None:
    for cmd in ("show", "cancel", "attach"):
        r = cli(cmd, "nope", url=url)
        assert r.exit_code == 1, cmd
        assert r.stderr.strip() == "error: no transition 'nope'", (cmd, r.stderr)
    r = cli("ls", "--state", "sleeping", url=url)
    assert r.exit_code == 1 and r.stderr.startswith("error: --state: Input should be")


def test_resize_of_an_unmanaged_vm_and_half_a_size(url: str) -> None:
    r = cli("resize", "test", "--profile", "smoke", url=url)
    assert r.exit_code == 1
    assert "'test' is not a VM vmshadow manages" in r.stderr
    r = cli("resize", "test", "--profile", "smoke", "--cpus", "2", url=url)
    assert r.exit_code == 1 and r.stderr.startswith("error: --cpus/--memory: give both")


def test_service_down_says_where_it_looked(url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    for args in (("ls",), ("show", "x"), LAUNCH):
        r = cli(*args, url=down)
        assert r.exit_code == 3, args
        assert f"is `vmshadow serve` running at {down}?" in r.stderr
        assert "connection refused" in r.stderr and "Traceback" not in r.stderr


def test_wrong_or_missing_token(
    url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSHADOW_TOKEN", "wrong")
    r = cli(*LAUNCH, url=url)
    assert r.exit_code == 1 and r.stderr.startswith("error: token: the service refused")
    monkeypatch.delenv("VMSHADOW_TOKEN")
    monkeypatch.setenv("VMSHADOW_TOKEN_FILE", str(settings.data_dir / "missing"))
    r = cli(*LAUNCH, url=url)
    assert r.exit_code == 1 and "error: token: no token file" in r.stderr
    # Reading needs no token.
    assert cli("ls", url=url).exit_code == 0


def test_token_and_url_from_the_config_file(
    url: str, svc: Service, stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "client.toml"
    conf.write_text(f'[client]\nurl = "{url}/api/v1/"\ntoken = "{svc.token}"\n')
    monkeypatch.setenv("VMSHADOW_CONFIG", str(conf))
    monkeypatch.setenv("VMSHADOW_TOKEN_FILE", str(tmp_path / "missing"))
    r = cli("launch", "web1", "--profile", "smoke", "--yes", "--json")
    assert r.exit_code == 0, r.stderr  # the token from the config file was accepted
    assert json.loads(r.stdout)["state"] == "running"
    conf.write_text('[client]\nurl = "127.0.0.1:8600"\n')
    r = cli("ls")
    assert r.exit_code == 1
    assert (
        r.stderr.strip() == "error: client.url: '127.0.0.1:8600' is not an http:// or https:// URL"
    )


@pytest.mark.subprocess
def test_ctrl_c_leaves_the_transition_and_says_how_to_cancel(url: str) -> None:
    # No stand-in: the transition waits in requested, as a slow shadow would.
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmshadow.cli", *LAUNCH],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "VMSHADOW_URL": url, "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("transition "), line
        tid = line.split()[1].rstrip(":")
        time.sleep(0.5)  # following the stream
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        # Never leave it (and its pipes) behind for a later test to trip over.
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert f"vmshadow cancel {tid}" in err and f"vmshadow attach {tid}" in err
    assert "Traceback" not in err
    assert api_get(url, f"/transitions/{tid}")["state"] == "requested"  # type: ignore[index]
