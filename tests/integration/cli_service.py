"""The running service for the CLI's client tests: the real API app served by
uvicorn on loopback, on libvirt's test driver, and a stand-in for the
controller. The fixtures are plain functions here; each test module declares
them with ``pytest.fixture(..., name=...)`` (a plugin module would escape
pytest's assertion rewriting).

The controller needs real shadows, so a small thread plays its part in the
store (the same calls the controller makes: advance, add samples, add a
prediction, confirm a fast launch); the real controller behind the same CLI is
covered by tests/e2e/test_cli_e2e.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sse_starlette.sse import AppStatus
from typer.testing import CliRunner, Result

from vmshadow.cli.main import app
from vmshadow.config import Settings, load_settings
from vmshadow.controller.service import TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionState
from vmshadow.server import Service, build
from vmshadow.store.repository import Store

S = TransitionState
NEED = Requirement(3.4, 900, 100)
REC = Allocation(4, 1280, 120)
LAUNCH = ("launch", "web1", "--profile", "smoke", "--load", "200")


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


def svc(settings: Settings) -> Service:
    return build(settings, with_controller=False)


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
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def isolate(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI finds the token in the data folder, as a user on the service's host does."""
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


def stand_in(settings: Settings, svc: Service) -> Iterator[StandIn]:
    with StandIn(settings, svc.store, NEED, REC) as s:
        yield s


def cli(*args: str, url: str | None = None, input: str | None = None) -> Result:
    env = {"VMSHADOW_URL": url} if url else {}
    return CliRunner(mix_stderr=False).invoke(app, list(args), input=input, env=env)


def api_get(url: str, path: str) -> object:
    return httpx.get(f"{url}/api/v1{path}", timeout=10).json()
