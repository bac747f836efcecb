"""Controllers on libvirt's test driver, for the fleet tests and the fleet bench.

The test driver runs no guest, so nothing would answer a shadow's agent
channel. ``AgentTestHost`` plays the guest side with the real agent run as a
host process (``python -m vmshadow.agent.guest --stdio``, as the agent tests
do): every shadow really runs its stress-ng and fio phases and reports over
the real protocol; only the "guest" is this host. What it measures is this
host, so tests decide the VM's size with an override, as a user may.

Two kinds of test host:

- ``test:///<file>.xml``: a host of the size the file says. It exists only
  inside the connection that opened it, so it serves controllers in one
  process (the pool keeps that connection open).
- ``test+unix:///default``: the test driver inside the system's libvirtd,
  shared by every process, so several controller processes see the same
  domains. It is one fixed host (16 CPUs, 3 GiB).

Run as a script it is a controller-only process (settings from the
environment, as ``vmshadow serve`` reads them), for the failover test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vmshadow.agent.transport import SubprocessTransport
from vmshadow.config import Settings, load_settings
from vmshadow.controller.engine import Controller
from vmshadow.controller.service import TransitionService
from vmshadow.domain.shadow import ShadowSpec
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.hypervisor.pool import HostPool, pool_from_settings
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

SHARED_TEST_HOST = "test+unix:///default"


NET_ISOLATED = (
    "unshare", "--net", "--mount", "--propagation", "private", "--",
    "sh", "-c", 'mount -t sysfs none /sys && exec "$0" "$@"',
)  # fmt: skip


class AgentTestHost(LibvirtHypervisor):
    """A test-driver host whose shadows' agents run as host processes."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self._agents: dict[str, SubprocessTransport] = {}
        self._lock = threading.Lock()

    def start_shadow(self, spec: ShadowSpec, *, scratch_cache: str = "none") -> None:
        super().start_shadow(spec, scratch_cache=scratch_cache)
        # In a network namespace of its own, like a guest with no NIC: the agent
        # reports its interfaces, and a shadow listing more than lo is refused.
        # (sysfs shows the namespace of whoever mounted it, hence a private mount
        # namespace with sysfs mounted again.)
        agent = SubprocessTransport.agent(
            str(spec.scratch_disk), python=(*NET_ISOLATED, sys.executable)
        )
        with self._lock:
            self._agents[spec.name] = agent

    def open_agent_channel(self, name: str) -> SubprocessTransport:  # type: ignore[override]
        with self._lock:
            agent = self._agents.get(name)
        if agent is None:
            raise AssertionError(f"no agent process for {name} in this process")
        return agent

    def destroy(self, name: str) -> bool:
        with self._lock:
            agent = self._agents.pop(name, None)
        if agent is not None:
            agent.close()
        return super().destroy(name)


def fleet_settings(tmp_path: Path, hosts: list[dict[str, str]], db_url: str) -> Settings:
    """Fast settings for controllers in this process over test-driver ``hosts``."""
    images = load_settings(config_path=Path("/nonexistent"), environ={}).images_dir
    return load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("images_dir",): str(images),
            ("database_url",): db_url,
            ("hosts",): hosts,
            ("accelerator",): "tcg",
            ("controller", "phase_s"): 2,
            ("controller", "refine_rounds"): 0,
            ("controller", "observe_s"): 1,
            ("controller", "poll_s"): 0.2,
            ("controller", "max_shadows"): 1,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )


@contextlib.contextmanager
def running_controller(
    settings: Settings,
) -> Iterator[tuple[TransitionService, Controller, HostPool]]:
    """One controller and the service beside it over ``settings``' test hosts."""
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    pool = pool_from_settings(settings, connect=AgentTestHost)
    controller = Controller(settings, store, pool=pool)
    service = TransitionService(settings, store, pool=pool, on_change=controller.wake.set)
    controller.start()
    try:
        yield service, controller, pool
    finally:
        controller.stop()
        pool.close()
        engine.dispose()


def write_host_xml(path: Path, *, cpus: int, memory_mib: int, cpu_model: str) -> str:
    """A test-driver host description; returns its URI."""
    path.write_text(
        f"""<node>
  <cpu>
    <mhz>2000</mhz>
    <model>{cpu_model}</model>
    <nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>
  </cpu>
  <memory>{memory_mib * 1024}</memory>
</node>
"""
    )
    return f"test://{path}"


def controller_env(data_dir: Path, db_url: str, **settings: str) -> dict[str, str]:
    """The environment of a controller process on the shared test host;
    ``settings`` are VMSHADOW_* names without the prefix, e.g. PHASE_S="2"."""
    from vmshadow.config import load_settings

    images = load_settings(config_path=Path("/nonexistent"), environ={}).images_dir
    env = {
        **os.environ,
        "VMSHADOW_CONFIG": "/nonexistent",
        "VMSHADOW_DATA_DIR": str(data_dir),
        "VMSHADOW_IMAGES_DIR": str(images),
        "VMSHADOW_DATABASE_URL": db_url,
        "VMSHADOW_HOSTS": f"shared={SHARED_TEST_HOST}",
        "VMSHADOW_ACCELERATOR": "tcg",
    }
    env.update({f"VMSHADOW_{k}": v for k, v in settings.items()})
    return env


class ControllerProcesses:
    """``count`` controller processes (this file run as a script), up when built."""

    def __init__(self, workdir: Path, db_url: str, count: int, **settings: str) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for n in range(count):
            log = workdir / f"controller-{n}.log"
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, __file__],
                        env=controller_env(workdir / f"controller-{n}", db_url, **settings),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.logs.append(log)
        deadline = time.monotonic() + 90
        while not all(" up" in log.read_text() for log in self.logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise AssertionError(f"controllers did not come up:\n{self.tails()}")
            time.sleep(0.2)

    def tails(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text()[-2000:]}" for log in self.logs)

    def kill9(self, pid: int) -> int:
        """SIGKILL the controller with this pid; returns its index."""
        n = next(i for i, p in enumerate(self.procs) if p.pid == pid)
        self.procs[n].send_signal(signal.SIGKILL)
        self.procs[n].wait(timeout=10)
        return n

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> int:
    """A controller process: settings from the environment; SIGTERM stops it."""
    from vmshadow.config import load_settings
    from vmshadow.controller.engine import Controller
    from vmshadow.hypervisor.pool import pool_from_settings
    from vmshadow.store.db import make_engine, migrate
    from vmshadow.store.repository import Store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = load_settings()
    engine = make_engine(settings.db_url)
    migrate(engine)
    pool = pool_from_settings(settings, connect=AgentTestHost)
    controller = Controller(settings, Store(engine), pool=pool)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    controller.start()
    print(f"controller {controller.owner} up", flush=True)
    done.wait()
    controller.stop()
    pool.close()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
