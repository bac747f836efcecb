"""The host-side adapter: every failure of the agent or its channel is an ``AgentError``."""

from __future__ import annotations

from typing import Any

import pytest
from agenttest_helpers import FakeTransport, guest_messages
from hypothesis import given, settings
from hypothesis import strategies as st

from vmshadow.agent.conversation import AgentReportedError
from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.host.adapter import AgentAdapter, AgentRefused, AgentTimeout
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import encode_message, message
from vmshadow.domain.errors import AgentError, HypervisorError

SPEC = PhaseSpec.from_dict({"phase_id": "cpu", "kind": "stress-ng", "duration_s": 2,
                            "params": {"stressor": "cpu", "workers": 1}})  # fmt: skip
HELLO = message("hello", agent_version="0.1.0", protocol=1, kernel="6.1.0", cpus=1,
                mem_total_kib=500000, scratch="/dev/vdb", net_ifaces=["lo"])  # fmt: skip
STARTED = message("phase_started", phase_id="cpu", t=0.5)
RESULT = message("phase_result", phase_id="cpu", kind="stress-ng", duration_s=2.01, exit_code=0,
                 metrics={"bogo_ops": 1234, "stressor": "cpu"})  # fmt: skip
FAILED = message("error", phase_id="cpu", code="tool_failed", message="stress-ng exited 2")


def stream(msgs: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_message(m) for m in msgs)


def adapter(msgs: list[dict[str, Any]], then: str = "eof") -> AgentAdapter:
    return AgentAdapter(FakeTransport([stream(msgs)], then=then))


class BrokenPipe(FakeTransport):
    """An agent process that died: its stdin pipe refuses writes."""

    def send(self, data: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")


class FailingChannel(FakeTransport):
    """The libvirt channel, which raises vmshadow's own error on a failed read."""

    def recv(self, max_bytes: int, timeout: float) -> bytes:
        raise HypervisorError("agent channel receive failed: connection reset")


def test_a_whole_conversation_through_the_adapter() -> None:
    got: list[object] = []
    with AgentAdapter(FakeTransport([stream([HELLO, STARTED, RESULT])])) as agent:
        assert agent.wait_hello(5).as_dict()["scratch"] == "/dev/vdb"
        assert agent.hello is not None
        assert agent.run_phase(SPEC, got.append, timeout=5).exit_code == 0
        agent.shutdown(timeout=5)  # the stream ends: an agent that just exits has stopped
        transport = agent.client._transport
    assert isinstance(transport, FakeTransport) and transport.closed


def test_silence_is_an_agent_timeout_with_the_clients_words() -> None:
    with pytest.raises(AgentTimeout, match="timed out awaiting hello") as info:
        AgentAdapter(FakeTransport([], then="timeout")).wait_hello(0.1)
    assert isinstance(info.value.__cause__, TimeoutError)
    agent = adapter([HELLO, STARTED], then="timeout")
    agent.wait_hello(5)
    with pytest.raises(AgentTimeout, match="silent"):
        agent.run_phase(SPEC, timeout=60, silence_timeout=0.1)


def test_an_error_the_agent_reports_is_refused_and_the_link_carries_on() -> None:
    agent = adapter([HELLO, STARTED, FAILED, STARTED, RESULT])
    agent.wait_hello(5)
    with pytest.raises(AgentRefused) as info:
        agent.run_phase(SPEC, timeout=5)
    assert info.value.code == "tool_failed"
    assert "phase cpu: stress-ng exited 2" in str(info.value)
    assert isinstance(info.value.__cause__, AgentReportedError)
    assert agent.run_phase(SPEC, timeout=5).phase_id == "cpu"


@pytest.mark.parametrize(
    ("msgs", "needle"),
    [
        ([HELLO, RESULT], "out_of_order"),  # a result for a phase never started
        ([HELLO, STARTED, message("bye")], "said bye during phase cpu"),
        ([HELLO, STARTED], "closed the channel"),  # the agent crashed mid-phase
    ],
)
def test_protocol_failures_are_agent_errors(msgs: list[dict[str, Any]], needle: str) -> None:
    agent = adapter(msgs)
    agent.wait_hello(5)
    with pytest.raises(AgentError, match=needle) as info:
        agent.run_phase(SPEC, timeout=5)
    assert type(info.value) is AgentError
    assert isinstance(info.value.__cause__, ProtocolError)


def test_a_broken_pipe_is_an_agent_error() -> None:
    agent = AgentAdapter(BrokenPipe([stream([HELLO])]))
    agent.wait_hello(5)
    with pytest.raises(AgentError, match="channel failed: .*Broken pipe") as info:
        agent.ping(5)
    assert isinstance(info.value.__cause__, BrokenPipeError)


def test_vmshadow_errors_from_the_transport_pass_through() -> None:
    with pytest.raises(HypervisorError, match="connection reset"):
        AgentAdapter(FailingChannel([])).wait_hello(5)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=120), max_size=10) | st.lists(guest_messages, max_size=12))
def test_anything_the_agent_sends_raises_only_agent_errors(
    script: list[bytes] | list[dict[str, Any]],
) -> None:
    chunks = [c if isinstance(c, bytes) else encode_message(c) for c in script]
    agent = AgentAdapter(FakeTransport(chunks))
    try:
        agent.wait_hello(5)
        agent.run_phase(SPEC, timeout=5)
        agent.ping(5)
        agent.shutdown(timeout=5)
    except AgentError:
        pass
