"""App phases: the agent running the user's own command (and server) for real.

Real small programs: ``python3 -c`` printing a rate, ``python3 -m
http.server`` on a free loopback port, a command that hangs, one that floods
its stdout; then through the agent's loop and protocol. The checks on the
command itself are in ``test_app_checks.py``.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agenttest_helpers import PipeTransport

from vmshadow.agent.appproc import HEAD_BYTES, TAIL_BYTES
from vmshadow.agent.apprun import RunningApp
from vmshadow.agent.appspec import AppParams
from vmshadow.agent.channel import Channel
from vmshadow.agent.client import AgentClient
from vmshadow.agent.guest import Agent, begin_phase
from vmshadow.agent.phaserun import Outcome, PhaseStartError, RunningPhase, Tools
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import GUEST_TYPES, LineDecoder, encode_message, message

PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
DISTRO = Tools(None, None, app_os="Test Linux 1")
PRINT_ARGS = "import sys; print('got', *sys.argv[1:]); print('tps =', sys.argv[1])"


def app(command: list[str], achieved: str = r"tps = ([0-9.]+)", **kw: Any) -> AppParams:
    return AppParams(command=tuple(command), achieved=achieved, rate=kw.pop("rate", 100.0), **kw)


def spec(params: AppParams, duration_s: int = 2, phase_id: str = "s0-app") -> PhaseSpec:
    return PhaseSpec(phase_id, "app", duration_s, params)


# -- running real programs ---------------------------------------------------------------


class FakeClock:
    """Real time plus a jump the test makes: the hard limit without waiting for it."""

    def __init__(self) -> None:
        self.jump = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.jump


def run(s: PhaseSpec) -> Outcome:
    return run_started(begin_phase(s, "/nonexistent", DISTRO))


def run_started(phase: RunningApp | RunningPhase) -> Outcome:
    """Drive one phase the way the agent's loop does: poll its fds, then ``poll()``."""
    give_up = time.monotonic() + 60
    while True:
        poller = select.poll()
        for fd in phase.filenos():
            poller.register(fd, select.POLLIN)
        poller.poll(max(0, int((phase.wake_at() - time.monotonic()) * 1000)) + 1)
        outcome = phase.poll()
        if outcome is not None:
            return outcome
        assert time.monotonic() < give_up, "the phase never ended"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


subprocess_test = pytest.mark.subprocess


@subprocess_test
def test_a_command_prints_its_rate_and_the_phase_reads_it() -> None:
    params = app([PY, "-c", PRINT_ARGS, "{rate}", "{duration}"], rate=250.0, unit_scale=0.001)
    out = run(spec(params, duration_s=3))
    assert out.error is None, out.error
    m = out.metrics
    assert m["achieved_raw"] == 250.0 and m["achieved_per_s"] == 0.25
    assert m["asked_per_s"] == 250.0 and m["os"] == "Test Linux 1"
    assert m["server"] is None and m["ready_s"] is None
    assert m["stdout_bytes"] == len("got 250 3\ntps = 250\n")
    assert out.exit_code == 0 and isinstance(m["command_s"], float)


@subprocess_test
@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_as_root_the_agent_runs_the_command_as_an_ordinary_account() -> None:
    params = app(
        [PY, "-c", "import os; print('uid', os.getuid(), os.getgroups())"], achieved=r"uid (\d+)"
    )
    out = run(spec(params))
    assert out.error is None, out.error
    assert out.metrics["user"] == "nobody" and out.metrics["achieved_raw"] == 65534
    absent = app([PY], user="no_such_user_x")
    with pytest.raises(PhaseStartError) as caught:
        begin_phase(spec(absent), "/nonexistent", DISTRO)
    assert caught.value.code == "no_user"


@subprocess_test
def test_a_server_is_started_waited_for_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    fetch = (
        "import urllib.request, sys; "
        f"body = urllib.request.urlopen('http://127.0.0.1:{port}/').read(); "
        "print('served', len(body), 'bytes; tps =', sys.argv[1])"
    )
    params = app(
        [PY, "-c", fetch, "{rate}"],
        server=(PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
        ready_port=port,
        rate=42.0,
    )
    phase = begin_phase(spec(params), "/nonexistent", DISTRO)
    assert isinstance(phase, RunningApp)
    server = phase._server
    assert server is not None
    out = run_started(phase)
    assert out.error is None, out.error
    assert out.metrics["achieved_per_s"] == 42.0
    assert isinstance(out.metrics["ready_s"], float) and out.metrics["ready_s"] < 20
    assert str(out.metrics["server"]).endswith(f"http.server {port} --bind 127.0.0.1")
    # Stopped: its process is gone and nothing listens on the port any more.
    assert gone(server.proc.pid) and not listening(port)


@subprocess_test
def test_a_hanging_command_is_killed_at_the_hard_limit() -> None:
    clock = FakeClock()
    params = app([PY, "-c", "import time; print('started', flush=True); time.sleep(1000)"])
    phase = begin_phase(spec(params, duration_s=1), "/nonexistent", DISTRO, clock)
    assert isinstance(phase, RunningApp) and phase._command is not None
    pid = phase._command.proc.pid
    time.sleep(0.5)
    clock.jump = 10_000.0
    out = run_started(phase)
    assert out.error is not None and out.error[0] == "timeout", out.error
    assert "ran past 31 s" in out.error[1] and "started" in out.error[1]
    assert gone(pid)


@subprocess_test
def test_an_unmatched_pattern_names_itself_and_the_output_tail() -> None:
    params = app([PY, "-c", "print('no rate here'); print('last words')"])
    out = run(spec(params))
    assert out.error is not None and out.error[0] == "bad_output"
    assert "'tps = ([0-9.]+)' matched no line" in out.error[1]
    assert "no rate here | last words" in out.error[1]
    not_number = app([PY, "-c", "print('tps = ...')"])
    out = run(spec(not_number))
    assert out.error is not None and "'...', which is not a number" in out.error[1]


@subprocess_test
def test_a_failing_command_reports_its_exit_and_stderr() -> None:
    params = app([PY, "-c", "import sys; print('tps = 5'); sys.exit('boom on stderr')"])
    out = run(spec(params))
    assert out.error is not None and out.error[0] == "tool_failed", out.error
    assert "exited 1" in out.error[1] and "stderr ends: boom on stderr" in out.error[1]


@subprocess_test
def test_output_is_kept_bounded_and_the_last_match_counts() -> None:
    spew = (
        "import sys; w = sys.stdout.write\n"
        "w('tps = 1\\n')\n"
        "for i in range(200000): w('filler line %d of noise\\n' % i)\n"
        "w('tps = 77.5\\n')"
    )
    out = run(spec(app([PY, "-c", spew])))
    assert out.error is None, out.error
    assert out.metrics["achieved_per_s"] == 77.5
    stdout_bytes = out.metrics["stdout_bytes"]
    assert isinstance(stdout_bytes, int) and stdout_bytes > 10 * (HEAD_BYTES + TAIL_BYTES)


@subprocess_test
def test_a_server_that_exits_early_fails_the_step() -> None:
    port = free_port()
    params = app(
        [PY, "-c", "print('tps = 1')"],
        server=(PY, "-c", "import sys; print('cannot start'); sys.exit(3)"),
        ready_port=port,
    )
    out = run(spec(params))
    assert out.error is not None and out.error[0] == "tool_failed"
    assert "exited 3 before 127.0.0.1" in out.error[1] and "cannot start" in out.error[1]


@subprocess_test
def test_a_port_that_never_opens_ends_the_wait() -> None:
    params = app(
        [PY, "-c", "print('tps = 1')"],
        server=(PY, "-c", "import time; print('warming up', flush=True); time.sleep(60)"),
        ready_port=free_port(),
        ready_timeout_s=1,
    )
    phase = begin_phase(spec(params), "/nonexistent", DISTRO)
    assert isinstance(phase, RunningApp) and phase._server is not None
    pid = phase._server.proc.pid
    out = run_started(phase)
    assert out.error is not None and out.error[0] == "app_not_ready", out.error
    assert "within 1 s" in out.error[1] and "warming up" in out.error[1]
    assert gone(pid)


def test_the_built_in_shadow_os_and_a_missing_program_are_refused() -> None:
    with pytest.raises(PhaseStartError) as caught:
        begin_phase(spec(app([PY])), "/nonexistent", Tools(None, None))
    assert caught.value.code == "app_unavailable"
    assert "built-in OS" in caught.value.message
    for program in ("no-such-bench-xyz", "/usr/bin/no-such-bench-xyz"):
        with pytest.raises(PhaseStartError) as caught:
            begin_phase(spec(app([program])), "/nonexistent", DISTRO)
        assert caught.value.code == "tool_missing" and program in caught.value.message


# -- through the agent's loop and protocol -----------------------------------------------


@pytest.fixture
def pipes() -> Iterator[tuple[Channel, PipeTransport]]:
    to_agent_r, to_agent_w = os.pipe()
    to_host_r, to_host_w = os.pipe()
    channel = Channel(to_agent_r, to_host_w, reconnects=False)
    host = PipeTransport(to_host_r, to_agent_w)
    yield channel, host
    host.close()
    channel.close()


def replies(agent: Agent) -> list[dict[str, Any]]:
    decoder = LineDecoder(GUEST_TYPES)
    return [m for line in agent.outbox.pending_lines() for m in decoder.feed(line)]


@subprocess_test
def test_the_agent_runs_an_app_phase_and_the_host_reads_what_it_achieved(
    pipes: tuple[Channel, PipeTransport],
) -> None:
    channel, host = pipes
    agent = Agent(channel, "/nonexistent", 0.2, tools=DISTRO)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    client = AgentClient(host)
    client.wait_hello(5)
    samples: list[Any] = []
    slow = "import sys, time; time.sleep(0.8); print('tps =', sys.argv[1])"
    s = spec(app([PY, "-c", slow, "{rate}"], rate=9.0), duration_s=1)
    result = client.run_phase(s, samples.append, timeout=30)
    assert result.kind == "app" and result.metrics["achieved_per_s"] == 9.0
    assert any(x.phase_id == "s0-app" for x in samples)
    client.shutdown(timeout=5)
    thread.join(5)
    assert not thread.is_alive()


def test_the_agent_refuses_an_app_phase_on_the_built_in_os(
    pipes: tuple[Channel, PipeTransport],
) -> None:
    agent = Agent(pipes[0], "/nonexistent", tools=Tools(None, None))
    agent.on_connect()
    agent.feed(encode_message(message("run", phase=spec(app([PY])).to_dict())))
    errors = [m for m in replies(agent) if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["app_unavailable"]
    assert errors[0]["phase_id"] == "s0-app" and agent.phase is None


@subprocess_test
def test_shutdown_stops_the_command_and_its_server(pipes: tuple[Channel, PipeTransport]) -> None:
    port = free_port()
    agent = Agent(pipes[0], "/nonexistent", tools=DISTRO)
    agent.on_connect()
    params = app(
        [PY, "-c", "import time; time.sleep(100)"],
        server=(PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
        ready_port=port,
    )
    agent.feed(encode_message(message("run", phase=spec(params, duration_s=60).to_dict())))
    phase = agent.phase
    assert isinstance(phase, RunningApp) and phase._server is not None
    give_up = time.monotonic() + 30
    while phase._command is None:
        agent.step(time.monotonic() + 0.1)
        assert time.monotonic() < give_up
    server_pid, command_pid = phase._server.proc.pid, phase._command.proc.pid
    agent.stop()
    assert gone(server_pid) and gone(command_pid) and not listening(port)
    errors = [m for m in replies(agent) if m["type"] == "error"]
    assert errors and errors[-1]["code"] == "aborted"


@subprocess_test
def test_a_server_that_ignores_sigterm_is_killed_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vmshadow.agent.apprun as apprun

    monkeypatch.setattr(apprun, "SERVER_GRACE_S", 1.0)
    port = free_port()
    stubborn = (
        "import signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(100)"
    )
    params = app([PY, "-c", "print('tps = 3')"], server=(PY, "-c", stubborn), ready_port=port)
    phase = begin_phase(spec(params), "/nonexistent", DISTRO)
    assert isinstance(phase, RunningApp) and phase._server is not None
    pid = phase._server.proc.pid
    out = run_started(phase)
    assert out.error is None, out.error
    assert out.metrics["achieved_per_s"] == 3.0
    assert out.duration_s >= 1.0  # it waited out the grace, then SIGKILL
    assert gone(pid) and not listening(port)
