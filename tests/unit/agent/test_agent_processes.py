"""The agent as a real process running real stress-ng and fio phases.

The main test runs the agent the way the guest does: from a bare copy of
``vmshadow/agent`` on PYTHONPATH, with ``python -S`` (no site-packages) and
the standard-library packages the image drops made unimportable.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agenttest_helpers import PipeTransport

import vmshadow.agent
from vmshadow.agent.channel import Channel
from vmshadow.agent.client import AgentClient
from vmshadow.agent.conversation import AgentReportedError, Sample
from vmshadow.agent.guest import Agent
from vmshadow.agent.phaserun import RunningPhase, Tools
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import GUEST_TYPES, LineDecoder, ProtocolError, encode_message, message
from vmshadow.agent.transport import SubprocessTransport

pytestmark = pytest.mark.subprocess

needs_tools = pytest.mark.skipif(
    not (shutil.which("stress-ng") and shutil.which("fio")), reason="stress-ng and fio needed"
)

# Refuse the modules the image leaves out; the list comes as the first argument.
BLOCKER = """
import sys
SKIP = set(sys.argv.pop(1).split(","))
class NotInImage:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in SKIP:
            raise ImportError(f"{name} is not in the shadow image")
        return None
sys.meta_path.insert(0, NotInImage)
"""
# ... then run the agent as the guest's init does.
BOOT = (
    BLOCKER
    + """
import runpy
runpy.run_module("vmshadow.agent.guest", run_name="__main__", alter_sys=True)
"""
)


def spec(d: dict[str, Any]) -> PhaseSpec:
    return PhaseSpec.from_dict(d)


@pytest.fixture(scope="module")
def guest_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/vmshadow as the image builder lays it out: the agent files and nothing else."""
    root = tmp_path_factory.mktemp("opt-vmshadow")
    package = root / "vmshadow" / "agent"
    package.mkdir(parents=True)
    (root / "vmshadow" / "__init__.py").write_text("")
    for source in Path(vmshadow.agent.__file__).parent.glob("*.py"):
        shutil.copy(source, package / source.name)
    return root


def _skipped() -> str:
    try:
        from vmshadow.image.hostfiles import _STDLIB_SKIP as skipped
    except ImportError:  # pragma: no cover - the image builder renamed it
        skipped = {"asyncio", "email", "http", "multiprocessing", "urllib", "unittest"}
    return ",".join(sorted(skipped))


def _guest_env(root: Path, tmp: Path | None = None) -> dict[str, str]:
    env = {"PYTHONPATH": str(root), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    if tmp is not None:  # phase work folders of a killed agent stay inside pytest's tmp
        env["TMPDIR"] = str(tmp)
    return env


def guest_like(root: Path, scratch: Path, interval: float = 0.5) -> SubprocessTransport:
    argv = [sys.executable, "-S", "-c", BOOT, _skipped(),
            "--stdio", "--scratch", str(scratch), "--interval", str(interval)]  # fmt: skip
    return SubprocessTransport(argv, env=_guest_env(root, scratch.parent))


def test_every_agent_module_imports_in_the_guest_like_python(guest_root: Path) -> None:
    names = sorted(p.stem for p in (guest_root / "vmshadow" / "agent").glob("*.py"))
    script = BLOCKER + "".join(f"import vmshadow.agent.{n}\n" for n in names)
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, _skipped()],
        env=_guest_env(guest_root), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch.img"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    return path


@pytest.fixture
def agent(guest_root: Path, scratch: Path) -> Iterator[tuple[AgentClient, SubprocessTransport]]:
    transport = guest_like(guest_root, scratch)
    client = AgentClient(transport)
    try:
        yield client, transport
    finally:
        client.close()
        assert "Traceback" not in transport.stderr_text(), transport.stderr_text()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@needs_tools
def test_real_phases(agent: tuple[AgentClient, SubprocessTransport], scratch: Path) -> None:
    client, transport = agent
    hello = client.wait_hello(15)
    assert hello.protocol == 1 and hello.scratch == str(scratch) and hello.mem_total_kib > 0
    samples: list[Sample] = []

    cpu = client.run_phase(
        spec({"phase_id": "cpu", "kind": "stress-ng", "duration_s": 2,
              "params": {"stressor": "cpu", "workers": 1}}),
        samples.append, timeout=30,
    )  # fmt: skip
    cpu_samples = [s for s in samples if s.phase_id == "cpu"]
    assert len(cpu_samples) >= 3
    assert mean([s.cpu_busy for s in cpu_samples[1:]]) > 0.5
    assert cpu.exit_code == 0 and cpu.metrics["source"] == "yaml"
    assert cpu.metrics["bogo_ops"] > 0 and cpu.metrics["bogo_ops_per_s_real"] > 0

    vm = client.run_phase(
        spec({"phase_id": "mem", "kind": "stress-ng", "duration_s": 2,
              "params": {"stressor": "vm", "workers": 1, "vm_bytes_mib": 128, "vm_keep": True}}),
        samples.append, timeout=30,
    )  # fmt: skip
    assert vm.metrics["stressor"] == "vm" and vm.metrics["bogo_ops"] > 0
    # The worker kept all 128 MiB resident, by its own peak RSS. Here the agent
    # reads this whole shared host's memory, where a rise of 128 MiB showed as
    # 112-134 MiB when quiet and 44 MiB in one full-suite run (others freeing
    # memory meanwhile); that used memory rises by what a phase holds is checked
    # inside a shadow, where nothing else runs (test_shadow_e2e: +150 MiB).
    assert vm.metrics["max_rss_kib"] >= 128 * 1024
    assert all(s.mem_used_kib > 0 for s in samples if s.phase_id == "mem")

    for rw, extra in (("randread", {"ioengine": "libaio", "iodepth": 4}),
                      ("randwrite", {"ioengine": "psync", "iodepth": 1, "fsync": 16})):  # fmt: skip
        io = client.run_phase(
            spec({"phase_id": rw, "kind": "fio", "duration_s": 2,
                  "params": {"rw": rw, "bs_kib": 4, "size_mib": 32, **extra}}),
            samples.append, timeout=60,
        )  # fmt: skip
        direction = "read" if rw == "randread" else "write"
        assert io.metrics[f"{direction}_iops"] > 0 and io.metrics["total_ios"] > 0
        assert io.metrics[f"{direction}_clat_p99_us"] >= io.metrics[f"{direction}_clat_p50_us"] > 0
        assert any(s.phase_id == rw for s in samples)

    assert [s.t for s in samples] == sorted(s.t for s in samples)
    client.shutdown(timeout=10)
    assert transport.process.wait(10) == 0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


@needs_tools
def test_killing_the_agent_mid_phase_is_a_clear_error(
    agent: tuple[AgentClient, SubprocessTransport],
) -> None:
    client, transport = agent
    client.wait_hello(15)
    orphans: list[int] = []

    def kill_on_first_sample(s: Sample) -> None:
        if s.phase_id == "long" and not orphans:
            orphans.extend(_children(transport.process.pid))
            transport.process.kill()

    try:
        with pytest.raises(ProtocolError) as info:
            client.run_phase(
                spec({"phase_id": "long", "kind": "stress-ng", "duration_s": 30,
                      "params": {"stressor": "cpu", "workers": 1}}),
                kill_on_first_sample, timeout=20,
            )  # fmt: skip
    finally:
        for pid in orphans:  # stress-ng runs in its own process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    assert info.value.code == "closed"
    assert "closed the channel" in str(info.value) and "phase long" in str(info.value)
    assert orphans


def test_sigterm_aborts_the_phase_and_says_bye(
    agent: tuple[AgentClient, SubprocessTransport],
) -> None:
    client, transport = agent
    client.wait_hello(15)

    sent: list[bool] = []

    def term(s: Sample) -> None:
        if s.phase_id == "rest" and not sent:  # once: a late one would hit the exiting agent
            sent.append(True)
            transport.process.send_signal(signal.SIGTERM)

    with pytest.raises(AgentReportedError) as info:
        client.run_phase(spec({"phase_id": "rest", "kind": "idle", "duration_s": 30}), term, 20)
    assert info.value.code == "aborted"
    client.shutdown(timeout=5)  # bye is already on its way
    assert transport.process.wait(10) == 0


def test_tool_failure_is_reported_with_its_output(tmp_path: Path) -> None:
    to_agent_r, to_agent_w = os.pipe()
    to_host_r, to_host_w = os.pipe()
    channel = Channel(to_agent_r, to_host_w, reconnects=False)
    host = PipeTransport(to_host_r, to_agent_w)
    agent = Agent(channel, str(tmp_path), 0.2, tools=Tools(stress_ng="/bin/false", fio=None))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    client = AgentClient(host)
    try:
        client.wait_hello(5)
        with pytest.raises(AgentReportedError) as info:
            hashing = {"stressor": "hash", "workers": 1}
            client.run_phase(
                spec({"phase_id": "x", "kind": "stress-ng", "duration_s": 1, "params": hashing}),
                timeout=10,
            )
        assert info.value.code == "tool_failed" and "stress-ng exited 1" in str(info.value)
        client.shutdown(5)
        thread.join(5)
    finally:
        host.close()
        channel.close()


def test_port_mode_over_a_pty(guest_root: Path, tmp_path: Path) -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    transport = SubprocessTransport(
        [sys.executable, "-m", "vmshadow.agent.guest", "--port", path, "--scratch", str(tmp_path),
         "--interval", "0.2"],
        env={"PYTHONPATH": str(guest_root), "PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    # Keep our slave fd open: with no slave fd open at all, reading the master fails
    # with EIO, which is what the agent sees in the opposite situation.
    decoder = LineDecoder(GUEST_TYPES)
    seen: list[str] = []
    try:
        for request in (message("ping"), message("shutdown")):
            os.write(master, encode_message(request))
            want = "pong" if request["type"] == "ping" else "bye"
            while want not in seen:
                ready, _, _ = select.select([master], [], [], 10)
                assert ready, f"no {want}; seen {seen}; {transport.stderr_text()}"
                seen += [m["type"] for m in decoder.feed(os.read(master, 65536))]
        assert seen[0] == "hello" and transport.process.wait(10) == 0
    finally:
        transport.close()
        os.close(master)
        os.close(slave)


@needs_tools
def test_an_oom_kill_during_a_phase_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stress-ng exits 0 when the OOM killer takes its workers (seen in a 512 MiB
    # guest asked for 900 MiB: 0 bogo ops, exit 0), so the agent reads the
    # kernel's counter. Here the counter is a file the test moves mid-phase.
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 1\noom_kill 3\n")
    monkeypatch.setattr(RunningPhase, "vmstat", str(vmstat))
    to_agent_r, to_agent_w = os.pipe()
    to_host_r, to_host_w = os.pipe()
    channel = Channel(to_agent_r, to_host_w, reconnects=False)
    host = PipeTransport(to_host_r, to_agent_w)
    agent = Agent(channel, str(tmp_path), 0.2, tools=Tools.find())
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    bump = threading.Timer(0.5, lambda: vmstat.write_text("nr_free_pages 1\noom_kill 4\n"))
    client = AgentClient(host)
    try:
        client.wait_hello(5)
        bump.start()
        with pytest.raises(AgentReportedError) as info:
            cpu = {"stressor": "cpu", "workers": 1}
            client.run_phase(
                spec({"phase_id": "m", "kind": "stress-ng", "duration_s": 2, "params": cpu}),
                timeout=30,
            )
        assert info.value.code == "out_of_memory"
        assert "OOM killer ended 1 process(es)" in str(info.value)
        client.shutdown(5)
        thread.join(5)
    finally:
        bump.cancel()
        host.close()
        channel.close()


@needs_tools
@pytest.mark.parametrize(
    "phase",
    [
        {
            "phase_id": "cpu",
            "kind": "stress-ng",
            "duration_s": 60,
            "params": {"stressor": "cpu", "workers": 1, "cpu_load": 50},
        },
        {
            "phase_id": "io",
            "kind": "fio",
            "duration_s": 60,
            "params": {"rw": "randwrite", "bs_kib": 4, "size_mib": 32, "iodepth": 1},
        },
        {"phase_id": "wait", "kind": "idle", "duration_s": 60, "params": {}},
    ],  # fmt: skip
    ids=["stress-ng", "fio", "idle"],
)
def test_a_stop_ends_a_long_phase_early_with_its_result(
    agent: tuple[AgentClient, SubprocessTransport], phase: dict[str, Any]
) -> None:
    """Adaptive profiling: the host says "enough" and still gets the tool's figures."""
    client, _ = agent
    client.wait_hello(15)
    samples: list[Sample] = []
    began = time.monotonic()
    result = client.run_phase(
        spec(phase), samples.append, timeout=90, stop_when=lambda: len(samples) >= 4
    )
    took = time.monotonic() - began
    assert took < 30, f"a stopped 60 s phase took {took:.1f} s"
    assert result.exit_code == 0 and result.duration_s < 30
    if phase["kind"] == "stress-ng":
        assert result.metrics["bogo_ops"] > 0
    if phase["kind"] == "fio":
        assert result.metrics["total_ios"] > 0 and result.metrics["write_iops"] > 0
    # The conversation goes on: a stop for a phase that has ended is ignored.
    client._send(message("stop", phase_id=phase["phase_id"]))
    assert client.ping(10) > 0
    client.shutdown(timeout=10)


def test_resync_is_answered_with_the_agents_clock(
    agent: tuple[AgentClient, SubprocessTransport],
) -> None:
    client, _ = agent
    client.wait_hello(15)
    first = client.ping(10)
    # Over stdio (a host process) the clock is never set: only the pool is mixed.
    assert client.resync(time.time(), os.urandom(32), timeout=10) >= first
    client.shutdown(timeout=10)
