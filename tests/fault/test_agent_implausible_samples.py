"""A guest agent that lies in its samples (issue 14, item 18): a flood of samples
far beyond the sampling rate, busy CPUs above the vCPU count, more memory used
than there is. Fed through ``AgentClient`` over a real unix socket, each ends
in ``ProtocolError("implausible")`` naming the field, and the flood stops being
read within the phase's bound instead of all 327,600 samples being taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_peer import AgentPeer, hello, peer

from vmshadow.agent.client import AgentClient
from vmshadow.agent.conversation import Sample, max_samples
from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phasespec import PhaseSpec, StressNgParams
from vmshadow.agent.protocol import encode_message, message
from vmshadow.hypervisor.libvirt_adapter import UnixSocketTransport

pytestmark = pytest.mark.fault

SPEC = PhaseSpec("p1", "stress-ng", 2, StressNgParams("cpu", 1))
INTERVAL_S = 1.0


def sample(i: int = 0, **over: Any) -> bytes:
    fields: dict[str, Any] = {
        "phase_id": "p1", "t": 1.0 + i * INTERVAL_S, "interval_s": INTERVAL_S,
        "cpu_busy": 0.5, "mem_used_kib": 100_000, "mem_total_kib": 480_000,
        "read_iops": 10.0, "write_iops": 10.0, "read_bps": 4096.0, "write_bps": 4096.0,
        "forks_ps": 1.0, "faults_ps": 100.0, **over,
    }  # fmt: skip
    return encode_message(message("sample", **fields))


STARTED = encode_message(message("phase_started", phase_id="p1", t=0.5))
RESULT = encode_message(
    message("phase_result", phase_id="p1", kind="stress-ng", duration_s=2.0, exit_code=0,
            metrics={})
)  # fmt: skip


def _agent(p: list[AgentPeer], after_run: bytes) -> Any:
    def behaviour(conn: socket.socket) -> None:
        conn.sendall(hello(cpus=1))
        p[0].read_until(conn, b'"type":"run"')
        conn.settimeout(10)
        conn.sendall(after_run)
        conn.recv(1)  # hold the channel open until the host hangs up

    return behaviour


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Any]:
    """Run SPEC against an agent that answers the run request with ``after_run``."""
    opened: list[AgentClient] = []

    def go(after_run: bytes, got: list[Sample]) -> Any:
        holder: list[AgentPeer] = []
        path = tmp_path / f"agent{len(opened)}.sock"
        with peer(path, _agent(holder, after_run)) as p:
            holder.append(p)
            client = AgentClient(UnixSocketTransport(str(path)), sample_interval_s=INTERVAL_S)
            opened.append(client)
            client.wait_hello(10)
            try:
                return client.run_phase(SPEC, got.append, timeout=60)
            finally:
                client.close()

    yield go


def test_a_plausible_phase_is_taken_whole(run: Any) -> None:
    got: list[Sample] = []
    result = run(STARTED + sample(0) + sample(1) + RESULT, got)
    assert result.exit_code == 0 and len(got) == 2


def test_a_flood_of_samples_is_refused_past_the_sampling_rate(run: Any) -> None:
    flood = b"".join(sample(i) for i in range(327_600 // 100))  # plenty past any bound
    got: list[Sample] = []
    with pytest.raises(ProtocolError) as info:
        run(STARTED + flood + RESULT, got)
    assert info.value.code == "implausible" and "more samples in phase p1" in info.value.message
    bound = max_samples(SPEC.duration_s, INTERVAL_S)
    assert len(got) == bound  # every sample within the bound, and not one more
    assert bound < 100  # 2 s phase at 1 s: its duration up to the kill limit, with slack


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"cpu_busy": 1e15}, "sample.cpu_busy"),
        ({"cpu_busy": 2.0}, "sample.cpu_busy"),  # two busy CPUs on one vCPU
        ({"mem_used_kib": 480_001}, "sample.mem_used_kib"),
        ({"mem_total_kib": 2**40, "mem_used_kib": 1}, "sample.mem_total_kib"),
        ({"read_iops": 1e15}, "sample.read_iops"),
        ({"write_bps": 1e15}, "sample.write_bps"),
        ({"interval_s": 0.0}, "sample.interval_s"),
    ],
)
def test_implausible_values_are_a_protocol_error_naming_the_field(
    run: Any, over: dict[str, Any], field: str
) -> None:
    got: list[Sample] = []
    with pytest.raises(ProtocolError) as info:
        run(STARTED + sample(0) + sample(1, **over) + RESULT, got)
    assert info.value.code == "implausible" and info.value.field == field
    assert len(got) == 1  # the sample before it was taken, the bad one was not


def test_a_clock_running_backwards_is_refused(run: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        run(STARTED + sample(5) + sample(1) + RESULT, [])
    assert info.value.code == "implausible" and info.value.field == "sample.t"


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_negative_or_non_finite_values_never_reach_the_host(run: Any, bad: float) -> None:
    # The encoder refuses them on our side, so write the line by hand.
    line = sample(1).replace(b'"cpu_busy":0.5', f'"cpu_busy":{bad}'.encode())
    assert line != sample(1)
    with pytest.raises(ProtocolError):
        run(STARTED + sample(0) + line + RESULT, [])
