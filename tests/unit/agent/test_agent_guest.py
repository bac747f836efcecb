"""The agent itself, in-process: request handling, the loop over pipes and over a pty port.

No tool runs here (``Tools(None, None)`` or idle phases), so these stay fast
and need no subprocess marker.
"""

from __future__ import annotations

import ast
import json
import os
import pty
import select
import sys
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agenttest_helpers import PipeTransport, host_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmshadow.agent
from vmshadow.agent.channel import Channel, Outbox, find_port
from vmshadow.agent.client import AgentClient
from vmshadow.agent.conversation import AgentReportedError
from vmshadow.agent.guest import Agent, _parse_args, main
from vmshadow.agent.phaserun import Tools
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import GUEST_TYPES, LineDecoder, encode_message, message

NO_TOOLS = Tools(None, None)
AGENT_DIR = Path(vmshadow.agent.__file__).parent


def idle(phase_id: str = "base", duration_s: int = 1) -> PhaseSpec:
    return PhaseSpec(phase_id, "idle", duration_s)


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


# -- request handling, without the loop --------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=100) | host_messages.map(encode_message), max_size=8))
def test_bad_host_input_is_answered_never_fatal(
    pipes: tuple[Channel, PipeTransport], chunks: list[bytes]
) -> None:
    agent = Agent(pipes[0], "/nonexistent/scratch", tools=NO_TOOLS)
    agent.on_connect()
    try:
        for chunk in chunks:
            agent.feed(chunk)
        out = replies(agent)  # every reply is a valid guest message (decoding checks it)
        assert out[0]["type"] == "hello"
        assert all(m["type"] != "error" or m["code"] != "internal" for m in out)
    finally:
        if agent.phase is not None:
            agent.phase.abort()


def test_a_phase_restarts_the_sampling_clock(pipes: tuple[Channel, PipeTransport]) -> None:
    now = [100.0]
    agent = Agent(pipes[0], "/nonexistent/scratch", 1.0, tools=NO_TOOLS, clock=lambda: now[0])
    agent.on_connect()
    now[0] = 100.7  # 0.7 s into the free-running interval
    agent.feed(encode_message(message("run", phase=idle().to_dict())))
    try:
        out = replies(agent)[1:]
        # The gap went out unphased, then the phase started: its first sample
        # is due one whole interval after its start, not 0.3 s later.
        assert [(m["type"], m.get("phase_id")) for m in out] == [
            ("sample", None),
            ("phase_started", "base"),
        ]
        assert agent.next_tick == pytest.approx(101.7)
    finally:
        assert agent.phase is not None
        agent.phase.abort()


def test_errors_name_the_problem_and_keep_request_order(
    pipes: tuple[Channel, PipeTransport],
) -> None:
    agent = Agent(pipes[0], "/nonexistent/scratch", tools=NO_TOOLS)
    agent.on_connect()
    bad_spec = {"phase_id": "x", "kind": "fio", "duration_s": 1, "params": {"rw": "trim"}}
    agent.feed(
        encode_message(message("ping"))
        + b'{"v":1,"type":"run","phase":' + json.dumps(bad_spec).encode() + b"}\n"
        + b"\xff\n"
        + encode_message(message("run", phase=idle().to_dict()))
        + encode_message(message("run", phase=idle("again").to_dict()))
        + encode_message(message("run", phase={"phase_id": "s", "kind": "stress-ng",
                                               "duration_s": 1,
                                               "params": {"stressor": "cpu", "workers": 1}}))
    )  # fmt: skip
    try:
        out = [(m["type"], m.get("code"), m.get("phase_id")) for m in replies(agent)[1:]]
        assert out == [
            ("pong", None, None),
            ("error", "bad_field", None),
            ("error", "bad_encoding", None),
            ("sample", None, None),  # the guest just before the phase: its samples restart
            ("phase_started", None, "base"),
            ("error", "busy", "again"),
            ("error", "busy", "s"),
        ]
        assert "run.phase.params" in replies(agent)[2]["message"]
    finally:
        assert agent.phase is not None
        agent.phase.abort()


def test_missing_tool_and_scratch_are_reported(pipes: tuple[Channel, PipeTransport]) -> None:
    agent = Agent(pipes[0], "/nonexistent/scratch", tools=Tools(None, "/usr/bin/fio"))
    agent.on_connect()
    cpu = {"phase_id": "c", "kind": "stress-ng", "duration_s": 1,
           "params": {"stressor": "cpu", "workers": 1}}  # fmt: skip
    io = {"phase_id": "i", "kind": "fio", "duration_s": 1,
          "params": {"rw": "read", "bs_kib": 4, "iodepth": 1, "size_mib": 1}}  # fmt: skip
    agent.feed(encode_message(message("run", phase=cpu)) + encode_message(message("run", phase=io)))
    codes = [(m["code"], m["phase_id"]) for m in replies(agent)[1:]]
    assert codes == [("tool_missing", "c"), ("no_scratch", "i")]
    assert agent.phase is None


def test_outbox_drops_old_samples_first() -> None:
    box = Outbox(limit=100)
    box.push(b"R" * 40)
    for _ in range(5):
        box.push(b"s" * 30, droppable=True)
    assert box.pending_lines()[0] == b"R" * 40
    assert sum(map(len, box.pending_lines())) <= 100 and box.dropped == 3


def test_find_port_by_name(tmp_path: Path) -> None:
    for entry, name in (
        ("vport0p0", "org.qemu.guest_agent.0"),
        ("vport0p1", "org.vmshadow.agent.0"),
    ):
        (tmp_path / entry).mkdir()
        (tmp_path / entry / "name").write_text(name + "\n")
    assert find_port("org.vmshadow.agent.0", str(tmp_path)) == "/dev/vport0p1"
    assert find_port("nope", str(tmp_path)) is None
    assert find_port("x", str(tmp_path / "missing")) is None


def test_a_port_that_never_appears_ends_the_agent_with_a_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--port-name", "org.example.none", "--scratch", "/s", "--wait-port", "0.2"]
    assert main(argv) == 2
    assert "no virtio-serial port named org.example.none" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--stdio"],  # no scratch
        ["--stdio", "--scratch", "relative.img"],
        ["--stdio", "--scratch", "/a:b"],
        ["--stdio", "--port", "/dev/x", "--scratch", "/s"],
        ["--stdio", "--scratch", "/s", "--interval", "0"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse_args(argv)


# -- the loop ------------------------------------------------------------------------


def start(agent: Agent) -> threading.Thread:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return thread


def test_loop_runs_a_phase_samples_it_and_shuts_down(pipes: tuple[Channel, PipeTransport]) -> None:
    channel, host = pipes
    thread = start(Agent(channel, "/nonexistent/scratch", 0.1, tools=NO_TOOLS))
    client = AgentClient(host)
    assert client.wait_hello(5).cpus >= 1
    got: list[Any] = []
    result = client.run_phase(idle(duration_s=1), got.append, timeout=10)
    assert result.kind == "idle" and result.exit_code == 0 and result.metrics == {}
    assert 0.9 <= result.duration_s < 2
    tagged = [s for s in got if s.phase_id == "base"]
    assert len(tagged) >= 7
    assert all(0 < s.interval_s < 1 and s.mem_total_kib > 0 for s in tagged)
    assert client.ping(5) > 1.0
    with pytest.raises(AgentReportedError, match="tool_missing"):
        client.run_phase(PhaseSpec.from_dict({"phase_id": "io", "kind": "fio", "duration_s": 1,
                         "params": {"rw": "read", "bs_kib": 4, "iodepth": 1, "size_mib": 1}}),
                         timeout=5)  # fmt: skip
    client.shutdown(timeout=5)
    thread.join(5)
    assert not thread.is_alive()


def test_loop_survives_garbage_and_oversized_lines(pipes: tuple[Channel, PipeTransport]) -> None:
    channel, host = pipes
    thread = start(Agent(channel, "/nonexistent/scratch", 0.2, tools=NO_TOOLS))
    host.send(b"{}\n" + b"z" * 200_000 + b"\n[1]\n" + encode_message(message("ping")))
    codes: list[str] = []
    decoder = LineDecoder(GUEST_TYPES)
    deadline = time.monotonic() + 5
    while "pong" not in codes and time.monotonic() < deadline:
        for m in decoder.feed(host.recv(65536, 5)):
            codes.append(m.get("code") or m["type"])
    assert [c for c in codes if c not in ("sample",)] == [
        "hello", "bad_field", "oversized", "not_object", "pong",
    ]  # fmt: skip
    host.send(encode_message(message("shutdown")))
    thread.join(5)
    assert not thread.is_alive()


def test_stdio_peer_going_away_stops_the_agent(pipes: tuple[Channel, PipeTransport]) -> None:
    channel, host = pipes
    agent = Agent(channel, "/s", 0.1, tools=NO_TOOLS)
    thread = start(agent)
    host.recv(65536, 5)  # hello
    os.close(host.wfd)  # EOF on the agent's input
    thread.join(5)
    assert not thread.is_alive() and agent.stopping


def test_port_tolerates_an_absent_host() -> None:
    """A pty stands in for the virtio-serial port: hang-up, EIO, and no exit."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    agent = Agent(Channel.port(port), "/s", 0.1, tools=NO_TOOLS)
    os.close(slave)
    thread = start(agent)
    try:
        decoder = LineDecoder(GUEST_TYPES)
        first: list[dict[str, Any]] = []
        while not first:
            select.select([master], [], [], 5)
            first = decoder.feed(os.read(master, 65536))
        assert first[0]["type"] == "hello"
        os.write(master, encode_message(message("ping")))
        os.close(master)  # the host goes away: reads give EIO, poll gives POLLHUP
        time.sleep(0.5)
        assert thread.is_alive() and not agent.connected
    finally:
        agent.stop_requested = True
        thread.join(5)
    assert not thread.is_alive()
    agent.channel.close()


# -- the guest's constraints ---------------------------------------------------------


def test_agent_imports_only_the_standard_library_and_itself() -> None:
    # The image copies these files alone into a guest with a trimmed stdlib; the
    # subprocess tests also run them there (this catches only direct imports).
    try:
        from vmshadow.image.hostfiles import _STDLIB_SKIP as skipped
    except ImportError:  # pragma: no cover - the image builder renamed it
        skipped = {"asyncio", "email", "http", "multiprocessing", "urllib", "unittest"}
    for path in sorted(AGENT_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if name.startswith("vmshadow"):
                    assert name.startswith("vmshadow.agent"), f"{path.name} imports {name}"
                else:
                    assert top != "pathlib", f"{path.name}: pathlib imports urllib"
                    assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
                    assert top not in skipped, f"{path.name} imports {name}, absent in the guest"


def test_the_image_carries_exactly_the_guest_modules() -> None:
    # What the checks above cover is what the builder copies: agent/*.py, and not
    # agent/host/, whose adapter imports vmshadow.domain.
    from vmshadow.image.builder import _agent_sources

    shipped = set(_agent_sources())
    assert shipped == {p.name for p in AGENT_DIR.glob("*.py")}
    assert (AGENT_DIR / "host" / "adapter.py").is_file() and "adapter.py" not in shipped
