"""The decision of ``vmshadow launch`` / ``attach``: the prompt, overrides,
refined predictions, closed stdin and Ctrl-C, against the real API app on
loopback with a stand-in for the controller (tests/integration/cli_service.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cli_service
import pytest
from cli_service import LAUNCH, NEED, REC, Service, StandIn, api_get, cli, isolate
from typer.testing import CliRunner

from vmshadow.cli import launch as cli_launch
from vmshadow.cli.main import app
from vmshadow.config import Settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction

pytestmark = pytest.mark.libvirt
settings = pytest.fixture(cli_service.settings, name="settings")
svc = pytest.fixture(cli_service.svc, name="svc")
url = pytest.fixture(cli_service.url, name="url")
stand_in = pytest.fixture(cli_service.stand_in, name="stand_in")


@pytest.fixture(autouse=True)
def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(settings, monkeypatch)


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


class _Thinking(io.BytesIO):
    """stdin whose answer comes only once ``answer`` is set, as a user who
    thinks at the prompt; ``asked`` is set when the prompt waits for it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked, self.answer = threading.Event(), threading.Event()

    def read(self, n: int | None = -1) -> bytes:
        if n != 0:  # read(0) is click asking whether this is a binary stream
            self.asked.set()
            assert self.answer.wait(30), "the test never answered"
        return super().read(n)

    read1 = read


def test_a_prediction_refined_at_the_prompt_is_shown_and_taken(
    url: str, svc: Service, stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_launch, "REFINE_POLL_S", 0.05)
    stdin = _Thinking(b"y\n")
    refined = Allocation(3, 1024, 100)

    def refine() -> None:
        if not stdin.asked.wait(30):
            return
        (t,) = api_get(url, "/transitions")  # type: ignore[misc]
        pred = Prediction("physical", "physical extrapolation", 0, 1.2, NEED, refined, {"round": 1})
        svc.store.add_prediction(t["id"], pred)
        time.sleep(1.0)  # twenty reads of the document by the CLI's watcher
        stdin.answer.set()

    threading.Thread(target=refine, daemon=True).start()
    r = CliRunner(mix_stderr=False).invoke(
        app, list(LAUNCH), input=stdin, env={"VMSHADOW_URL": url}
    )
    assert r.exit_code == 0, r.stdout + r.stderr
    out = r.stdout
    assert "Launch with the recommendation? [Y/n/o] (o = choose your own size)" in out
    note = "prediction refined (round 2): 3 vCPU, 1024 MiB, 100 IOPS; y now takes this one"
    assert out.count(note) == 1
    assert out.index(note) < out.index("confirmed the latest: 3 vCPU, 1024 MiB, 100 IOPS")
    (t,) = api_get(url, "/transitions")  # type: ignore[misc]
    assert t["final"] == refined.as_dict() and t["state"] == "running"


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
    assert r.stdout.startswith(f"following transition {t['id']}: launch web1, predicted\n")
    assert api_get(url, f"/transitions/{t['id']}")["state"] == "running"  # type: ignore[index]


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
