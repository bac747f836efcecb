"""The host-side client and its conversation rules, over scripted transports."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from agenttest_helpers import FakeTransport, guest_messages
from hypothesis import given, settings
from hypothesis import strategies as st

from vmshadow.agent.client import AgentClient
from vmshadow.agent.conversation import AgentReportedError, Conversation, PhaseResult, Sample
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import MAX_LINE_BYTES, ProtocolError, encode_message, message

SPEC = PhaseSpec.from_dict({"phase_id": "cpu", "kind": "stress-ng", "duration_s": 2,
                            "params": {"stressor": "cpu", "workers": 1}})  # fmt: skip
HELLO = message("hello", agent_version="0.1.0", protocol=1, kernel="6.1.0", cpus=1,
                mem_total_kib=500000, scratch="/dev/vdb", net_ifaces=["lo"])  # fmt: skip


def sample(phase_id: str | None, t: float = 1.0, busy: float = 0.9) -> dict[str, Any]:
    return message(
        "sample", phase_id=phase_id, t=t, interval_s=1.0, cpu_busy=busy, mem_used_kib=1000,
        mem_total_kib=500000, read_iops=0.0, write_iops=0.0, read_bps=0.0, write_bps=0.0,
        forks_ps=0.0, faults_ps=0.0,
    )  # fmt: skip


STARTED = message("phase_started", phase_id="cpu", t=0.5)
RESULT = message("phase_result", phase_id="cpu", kind="stress-ng", duration_s=2.01, exit_code=0,
                 metrics={"bogo_ops": 1234, "stressor": "cpu"})  # fmt: skip
HAPPY = [HELLO, sample(None), STARTED, sample("cpu", 1.5), sample("cpu", 2.5), RESULT]


def stream(msgs: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_message(m) for m in msgs)


def run(
    msgs: list[dict[str, Any]], then: str = "eof", **kw: Any
) -> tuple[PhaseResult, list[Sample]]:
    client = AgentClient(FakeTransport([stream(msgs)], then=then))
    got: list[Sample] = []
    client.wait_hello(5)
    return client.run_phase(SPEC, got.append, timeout=kw.pop("timeout", 5), **kw), got


def test_happy_path() -> None:
    transport = FakeTransport([stream(HAPPY)])
    client = AgentClient(transport)
    hello = client.wait_hello(5)
    assert hello.as_dict()["scratch"] == "/dev/vdb" and client.wait_hello(0) is hello
    got: list[Sample] = []
    result = client.run_phase(SPEC, got.append, timeout=5)
    assert result.as_dict() == {k: v for k, v in RESULT.items() if k not in ("v", "type")}
    assert [s.phase_id for s in got] == [None, "cpu", "cpu"]
    assert got[1].cpu_busy == 0.9 and isinstance(got[1].t, float)
    sent = [json.loads(line) for line in b"".join(transport.sent).splitlines()]
    assert sent == [message("run", phase=SPEC.to_dict())]


@given(st.data())
def test_any_chunking_gives_the_same_result(data: st.DataObject) -> None:
    raw = stream(HAPPY)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=20, unique=True)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    client = AgentClient(FakeTransport(chunks))
    client.wait_hello(5)
    assert client.run_phase(SPEC, timeout=5).exit_code == 0


@pytest.mark.parametrize(
    ("msgs", "needle"),
    [
        ([sample(None), HELLO], "before hello"),
        ([STARTED], "before hello"),
        ([HELLO, HELLO], "second hello"),
        ([HELLO, RESULT], "phase_result for cpu"),
        ([HELLO, sample("cpu")], "sample for phase cpu"),
        ([HELLO, message("phase_started", phase_id="other", t=1.0)], "phase_started for other"),
        ([HELLO, STARTED, STARTED], "phase_started for cpu"),
        ([HELLO, STARTED, sample("other")], "sample for phase other"),
        ([HELLO, STARTED, sample(None)], "sample for phase None"),
        ([HELLO, STARTED, {**RESULT, "phase_id": "other"}], "phase_result for other"),
        ([HELLO, STARTED, {**RESULT, "kind": "fio"}], "kind fio"),
        ([HELLO, message("pong", t=1.0)], "pong without ping"),
        ([HELLO, STARTED, message("error", phase_id="x", code="boom", message="m")], "phase x"),
        ([HELLO, STARTED, RESULT, RESULT], None),  # the second result comes after the call
    ],
)
def test_out_of_order_messages_raise_protocol_error(
    msgs: list[dict[str, Any]], needle: str | None
) -> None:
    if needle is None:
        result, _ = run(msgs)
        assert result.phase_id == "cpu"
        return
    with pytest.raises(ProtocolError) as info:
        run(msgs)
    assert info.value.code == "out_of_order"
    assert needle in info.value.message


def test_a_protocol_violation_breaks_the_client_for_good() -> None:
    client = AgentClient(FakeTransport([stream([HELLO, RESULT, *HAPPY[1:]])]))
    client.wait_hello(5)
    with pytest.raises(ProtocolError, match="out_of_order"):
        client.run_phase(SPEC, timeout=5)
    with pytest.raises(ProtocolError, match="broken"):
        client.run_phase(SPEC, timeout=5)


def test_agent_error_for_the_phase_is_reported_and_the_client_carries_on() -> None:
    failed = message("error", phase_id="cpu", code="tool_failed", message="stress-ng exited 2")
    client = AgentClient(FakeTransport([stream([HELLO, STARTED, failed, *HAPPY[1:]])]))
    client.wait_hello(5)
    with pytest.raises(AgentReportedError) as info:
        client.run_phase(SPEC, timeout=5)
    assert isinstance(info.value, ProtocolError)  # hosts that catch only ProtocolError still do
    assert info.value.code == "tool_failed" and info.value.phase_id == "cpu"
    assert "phase cpu: stress-ng exited 2" in str(info.value)
    assert client.run_phase(SPEC, timeout=5).phase_id == "cpu"


def test_rejected_request_with_null_phase_id_ends_the_request() -> None:
    rejected = message("error", phase_id=None, code="bad_field", message="run.phase.x: unknown")
    with pytest.raises(AgentReportedError, match="bad_field"):
        run([HELLO, rejected])


def test_end_of_stream_mid_phase_is_a_clear_error() -> None:
    with pytest.raises(ProtocolError) as info:
        run([HELLO, STARTED, sample("cpu")])
    assert info.value.code == "closed"
    assert "closed the channel" in info.value.message and "phase cpu" in info.value.message


def test_bye_mid_phase_is_a_clear_error() -> None:
    with pytest.raises(ProtocolError, match="said bye during phase cpu"):
        run([HELLO, STARTED, message("bye")])


def test_silence_is_a_timeout_not_a_hang() -> None:
    with pytest.raises(TimeoutError, match="result of phase cpu"):
        run([HELLO, STARTED], then="timeout", timeout=0.2)
    with pytest.raises(TimeoutError, match="silent"):
        run([HELLO, STARTED], then="timeout", timeout=60, silence_timeout=0.1)
    with pytest.raises(TimeoutError):
        AgentClient(FakeTransport([], then="timeout")).wait_hello(0.1)


def test_oversized_line_from_the_agent() -> None:
    client = AgentClient(FakeTransport([b"x" * (MAX_LINE_BYTES + 1)] + [b"y" * 1000] * 5))
    with pytest.raises(ProtocolError) as info:
        client.wait_hello(5)
    assert info.value.code == "oversized"


def test_shutdown_waits_for_bye_and_forgives_stragglers() -> None:
    transport = FakeTransport(
        [stream([HELLO, STARTED, sample("cpu"), sample(None), message("bye")])]
    )
    client = AgentClient(transport)
    client.wait_hello(5)
    client.conversation.sent_run("cpu", "stress-ng")  # as if a phase had timed out
    client.shutdown(timeout=5)
    assert json.loads(transport.sent[-1]) == message("shutdown")
    client.shutdown()  # closed already: nothing sent
    assert len(transport.sent) == 1
    client.close()
    assert transport.closed


def test_shutdown_accepts_an_agent_that_just_exits() -> None:
    client = AgentClient(FakeTransport([stream([HELLO])]))
    client.wait_hello(5)
    client.shutdown(timeout=5)


def test_ping() -> None:
    client = AgentClient(FakeTransport([stream([HELLO, sample(None), message("pong", t=3.5)])]))
    assert client.ping(5) == 3.5


# -- properties ------------------------------------------------------------------------


def _exercise(client: AgentClient) -> None:
    """Drive a client through a whole session; only the allowed outcomes may escape."""
    try:
        client.wait_hello(5)
        client.run_phase(SPEC, lambda s: None, timeout=5)
        client.run_phase(SPEC, timeout=5)
        client.shutdown(timeout=5)
    except (ProtocolError, TimeoutError):
        pass


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=120), max_size=10))
def test_arbitrary_bytes_only_ever_raise_protocol_errors(chunks: list[bytes]) -> None:
    _exercise(AgentClient(FakeTransport(chunks)))


@settings(max_examples=200)
@given(st.lists(guest_messages, max_size=12))
def test_arbitrary_valid_messages_in_any_order(msgs: list[dict[str, Any]]) -> None:
    _exercise(AgentClient(FakeTransport([stream(msgs)])))


@settings(max_examples=200)
@given(st.permutations(HAPPY), st.integers(0, len(HAPPY)))
def test_shuffled_conversations_succeed_only_in_the_right_order(
    msgs: list[dict[str, Any]], cut: int
) -> None:
    msgs = msgs[:cut] + msgs[cut + 1 :] if cut < len(msgs) else msgs
    client = AgentClient(FakeTransport([stream(msgs)]))
    try:
        client.wait_hello(5)
        client.run_phase(SPEC, timeout=5)
    except ProtocolError:
        return
    # Success is only possible if every message the rules need came in a legal order.
    assert msgs[0] == HELLO
    assert msgs.index(STARTED) < msgs.index(RESULT)


@given(st.lists(guest_messages, max_size=12))
def test_conversation_rules_never_raise_anything_but_protocol_error(
    msgs: list[dict[str, Any]],
) -> None:
    conv = Conversation()
    for i, msg in enumerate(msgs):
        if i == 2:
            with contextlib.suppress(ProtocolError):
                conv.sent_run("cpu", "stress-ng")
        with contextlib.suppress(ProtocolError):
            conv.receive(msg)
