"""Message encoding, validation and the incremental line decoder."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agenttest_helpers import guest_messages, host_messages
from hypothesis import given, settings
from hypothesis import strategies as st

from vmshadow.agent.protocol import (
    ALL_TYPES,
    GUEST_TYPES,
    HOST_TYPES,
    MAX_LINE_BYTES,
    LineDecoder,
    ProtocolError,
    decode_line,
    encode_message,
    message,
    validate_message,
)

any_message = guest_messages | host_messages
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def sample(**over: Any) -> dict[str, Any]:
    base = message(
        "sample", phase_id=None, t=1.0, interval_s=1.0, cpu_busy=0.5, mem_used_kib=10,
        mem_total_kib=20, read_iops=0, write_iops=0, read_bps=0, write_bps=0,
        forks_ps=0, faults_ps=0,
    )  # fmt: skip
    return {**base, **over}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode()


# -- round trip ------------------------------------------------------------------------


@given(any_message)
def test_encode_decode_round_trip(msg: dict[str, Any]) -> None:
    encoded = encode_message(msg)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert encoded.isascii()
    assert decode_line(encoded[:-1]) == msg


@given(st.lists(any_message, max_size=8), st.data())
def test_decoder_is_independent_of_chunking(
    msgs: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = b"".join(encode_message(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = LineDecoder()
    out: list[dict[str, Any]] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[a:b])
    assert out == msgs
    assert decoder.buffered == 0


# -- never anything but valid messages or ProtocolError --------------------------------


def _drain(decoder: LineDecoder, chunks: list[bytes]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for chunk in [*chunks, b""]:
        for item in decoder.feed_all(chunk):
            if isinstance(item, ProtocolError):
                assert item.code in {
                    "oversized", "bad_encoding", "malformed_json", "not_object", "bad_field",
                    "unknown_type", "version_mismatch",
                }  # fmt: skip
            else:
                got.append(item)
    return got


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_yield_only_valid_messages_or_protocol_errors(chunks: list[bytes]) -> None:
    decoder = LineDecoder(GUEST_TYPES, max_line_bytes=64)
    for msg in _drain(decoder, chunks):
        validate_message(msg, GUEST_TYPES)
    assert decoder.buffered <= 64 + 200


@given(json_values, st.sampled_from(sorted(ALL_TYPES)), st.booleans())
def test_arbitrary_json_objects_are_validated(value: Any, kind: str, typed: bool) -> None:
    obj = (
        value if not typed else {"v": 1, "type": kind, **(value if isinstance(value, dict) else {})}
    )
    try:
        msg = decode_line(line(obj))
    except ProtocolError:
        return
    assert encode_message(msg)  # whatever got through is a message we could have sent


@given(any_message, st.data())
def test_mutating_one_field_is_rejected_or_still_valid(
    msg: dict[str, Any], data: st.DataObject
) -> None:
    msg = dict(msg)  # st.just() hands out the same object every time
    key = data.draw(st.sampled_from(sorted(msg)))
    msg[key] = data.draw(json_values)
    try:
        decoded = decode_line(line(msg))
    except ProtocolError as exc:
        assert exc.code in {"bad_field", "unknown_type", "version_mismatch", "malformed_json"}
        return
    assert decoded == msg


@given(st.lists(st.one_of(any_message.map(encode_message), st.binary(max_size=30)), max_size=10))
def test_decoder_resynchronises_after_bad_lines(parts: list[bytes]) -> None:
    # Every well-formed line terminated after a newline comes through, whatever precedes it.
    stream = b"\n".join(parts) + b"\n"
    got = _drain(LineDecoder(), [stream])
    good = [p for p in parts if p.endswith(b"\n") and decode_ok(p)]
    for msg in (decode_line(p[:-1]) for p in good):
        assert msg in got


def decode_ok(raw: bytes) -> bool:
    try:
        decode_line(raw[:-1])
    except ProtocolError:
        return False
    return True


# -- specific rejections ---------------------------------------------------------------


def test_oversized_line_is_rejected_without_buffering_it() -> None:
    decoder = LineDecoder()
    with pytest.raises(ProtocolError) as info:
        for _ in range(10):  # 10 x 32 KiB without a newline
            decoder.feed(b"x" * 32768)
    assert info.value.code == "oversized"
    for _ in range(100):
        assert decoder.feed(b"y" * 32768) == []  # still inside the bad line: dropped
        assert decoder.buffered == 0
    ping = encode_message(message("ping"))
    assert decoder.feed(b"tail of the bad line\n" + ping) == [message("ping")]


def test_line_of_exactly_the_limit_is_accepted() -> None:
    head = b'{"v":1,"type":"ping"'
    exact = head + b" " * (MAX_LINE_BYTES - len(head) - 1) + b"}"
    assert len(exact) == MAX_LINE_BYTES
    assert LineDecoder(HOST_TYPES).feed(exact + b"\n") == [message("ping")]
    with pytest.raises(ProtocolError, match="oversized"):
        LineDecoder(HOST_TYPES).feed(b" " + exact + b"\n")


def test_messages_before_a_bad_line_are_kept_in_order() -> None:
    decoder = LineDecoder(HOST_TYPES)
    ping = encode_message(message("ping"))
    items = decoder.feed_all(ping + b"garbage\n" + encode_message(message("shutdown")))
    assert items[0] == message("ping")
    assert isinstance(items[1], ProtocolError) and items[1].code == "malformed_json"
    assert items[2] == message("shutdown")


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        (b"\xff\xfe{}", "bad_encoding", "UTF-8"),
        (b"{", "malformed_json", "JSON"),
        (b"[1, 2]", "not_object", "array"),
        (b'"hi"', "not_object", "string"),
        (b'{"v":1,"type":"pong","t":NaN}', "malformed_json", "NaN"),
        (b'{"v":1,"type":"ping","type":"ping"}', "malformed_json", "duplicate"),
        (b"[" * 100_000, "oversized", "exceeds"),
        (b"[" * 50_000, "malformed_json", "recursion"),
        (b'{"type":"ping"}', "bad_field", "v: missing"),
        (b'{"v":true,"type":"ping"}', "bad_field", "v: must be an integer"),
        (b'{"v":2,"type":"ping"}', "version_mismatch", "expected 1"),
        (b'{"v":1}', "bad_field", "type: missing"),
        (b'{"v":1,"type":7}', "bad_field", "type: must be a string"),
        (b'{"v":1,"type":"reboot"}', "unknown_type", "reboot"),
        (b'{"v":1,"type":"ping","extra":1}', "bad_field", "ping.extra: unknown field"),
    ],
)
def test_rejections_have_stable_codes(raw: bytes, code: str, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_line(raw)
    assert info.value.code == code
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("cpu_busy", "high", "sample.cpu_busy: must be a number, got string"),
        ("cpu_busy", -1, "sample.cpu_busy: must be a finite number"),
        ("cpu_busy", True, "sample.cpu_busy: must be a number, got boolean"),
        ("mem_used_kib", 1.5, "sample.mem_used_kib: must be an integer"),
        ("phase_id", "Bad Id", "sample.phase_id: must match"),
        ("t", None, "sample.t: must be a number, got null"),
    ],
)
def test_wrong_typed_fields_are_named(field: str, value: object, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_line(line(sample(**{field: value})))
    assert info.value.code == "bad_field"
    assert info.value.field == f"sample.{field}"
    assert needle in info.value.message


def test_missing_field_is_named() -> None:
    msg = sample()
    del msg["write_bps"]
    with pytest.raises(ProtocolError, match=r"sample\.write_bps: missing field"):
        decode_line(line(msg))


def test_direction_is_enforced() -> None:
    ping = encode_message(message("ping"))
    with pytest.raises(ProtocolError, match="unknown_type"):
        LineDecoder(GUEST_TYPES).feed(ping)


def test_hello_with_another_protocol_is_a_version_mismatch() -> None:
    hello = message(
        "hello",
        agent_version="9",
        protocol=2,
        kernel="6.1",
        cpus=1,
        mem_total_kib=1,
        scratch="/x",
        net_ifaces=["lo"],
    )
    with pytest.raises(ProtocolError) as info:
        decode_line(line(hello))
    assert info.value.code == "version_mismatch"


def test_run_validates_the_whole_phase_spec_and_names_the_field() -> None:
    run = message(
        "run",
        phase={"phase_id": "a", "kind": "stress-ng", "duration_s": 5,
               "params": {"stressor": "cpu", "workers": 0}},
    )  # fmt: skip
    with pytest.raises(ProtocolError) as info:
        decode_line(line(run))
    assert info.value.field == "run.phase.params.workers"
    assert "run.phase.params.workers: must be in 1..64" in info.value.message


def test_metrics_must_be_flat_scalars() -> None:
    result = message(
        "phase_result", phase_id="a", kind="fio", duration_s=1, exit_code=0, metrics={"x": [1]}
    )
    with pytest.raises(ProtocolError, match=r"phase_result\.metrics\.x"):
        decode_line(line(result))


def test_encode_refuses_invalid_and_oversized_messages() -> None:
    with pytest.raises(ProtocolError, match="bad_field"):
        encode_message(message("pong", t=float("nan")))
    huge = message("error", phase_id=None, code="x", message="a" * 4096)
    assert len(encode_message(huge)) < MAX_LINE_BYTES
    with pytest.raises(ProtocolError, match="at most 4096"):
        encode_message({**huge, "message": "a" * 5000})


def test_blank_lines_are_ignored() -> None:
    assert LineDecoder().feed(b"\n  \r\n" + encode_message(message("bye"))) == [message("bye")]


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"v": 1, "type": "stop", "phase_id": "bad id!"}, "stop.phase_id"),
        ({"v": 1, "type": "resync", "epoch_s": -1, "entropy": "ab" * 16}, "resync.epoch_s"),
        ({"v": 1, "type": "resync", "epoch_s": 1.7e9, "entropy": "xyz" * 16}, "resync.entropy"),
        ({"v": 1, "type": "resync", "epoch_s": 1.7e9, "entropy": "ab"}, "resync.entropy"),
    ],
)
def test_stop_and_resync_name_the_bad_field(msg: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        validate_message(msg, HOST_TYPES)
    assert err.value.field == field


def test_stop_and_resync_are_host_messages_only() -> None:
    good = {"v": 1, "type": "resync", "epoch_s": 1.7e9, "entropy": "0f" * 32}
    assert validate_message(good, HOST_TYPES) == good
    with pytest.raises(ProtocolError):
        validate_message({"v": 1, "type": "stop", "phase_id": "cpu"}, GUEST_TYPES)
