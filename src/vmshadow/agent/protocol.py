"""The agent wire protocol: versioned JSON lines, one message per line.

Every message is a JSON object on one line of at most ``MAX_LINE_BYTES``
bytes (newline excluded) with ``"v": 1`` and a ``"type"``. Fields are exact:
a missing, unknown or wrong-typed field is a ``ProtocolError`` that names it.

Guest -> host::

    hello          agent_version, protocol, kernel, cpus, mem_total_kib, scratch,
                   net_ifaces (the names in the guest's /sys/class/net: a shadow has
                   only "lo", and the host checks it from inside as well as from the XML)
    pong           t                                    (the answer to ping)
    phase_started  phase_id, t
    sample         phase_id|null, t, interval_s, cpu_busy, mem_used_kib,
                   mem_total_kib, read_iops, write_iops, read_bps, write_bps,
                   forks_ps, faults_ps
    phase_result   phase_id, kind, duration_s, exit_code, metrics
    error          phase_id|null, code, message
    bye

Host -> guest::

    run            phase (a PhaseSpec as a dict)
    stop           phase_id   (end that phase now, with its result: the host has seen
                   enough; ignored when that phase is not the one running)
    ping
    resync         epoch_s, entropy   (after the shadow was restored from a saved
                   state: set the guest's clock, mix the host's random bytes into the
                   guest's pool; answered with a pong)
    shutdown

``t`` is seconds since the agent started, on its monotonic clock. Samples
carry the id of the phase running when they were taken (null between
phases); ``cpu_busy`` is busy CPUs (0.97 = 97 % of one vCPU), rates are per
second over ``interval_s``, memory in kiB. fio latencies in ``metrics`` are
microseconds (``*_clat_p50_us``), bandwidths bytes per second.

``error`` codes the agent sends: the decoder's (``oversized``,
``bad_encoding``, ``malformed_json``, ``not_object``, ``bad_field``,
``unknown_type``, ``version_mismatch``; phase_id null) and, for a phase,
``busy``, ``tool_missing``, ``no_scratch``, ``bad_field``, ``tool_failed``,
``bad_output``, ``timeout``, ``aborted``, ``out_of_memory`` (the guest's OOM
killer ended a process during the phase); for an ``app`` phase (the user's
own program) also ``app_unavailable`` (vmshadow's built-in shadow OS, which
has no application), ``no_user`` and ``app_not_ready`` (nothing listened on
its ``ready_port`` in time); ``internal`` means an agent bug. An app phase's
``metrics`` carry ``achieved_per_s``, the rate the application reached.
A phase ends with exactly one ``phase_result`` or one ``error``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, NoReturn

from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.fields import (
    as_choice,
    as_int,
    as_num,
    as_object,
    as_str,
    bad,
    check_keys,
    json_type,
)
from vmshadow.agent.phasespec import KINDS, PHASE_ID_RE, PhaseSpec

PROTOCOL_VERSION = 1
AGENT_VERSION = "0.1.0"
MAX_LINE_BYTES = 64 * 1024
MAX_TEXT = 4096  # longest free-text string (error messages, paths) in any message
MAX_METRICS = 64

Message = dict[str, Any]
Check = Callable[[object, str], object]

GUEST_TYPES = frozenset(
    {"hello", "pong", "phase_started", "sample", "phase_result", "error", "bye"}
)
HOST_TYPES = frozenset({"run", "stop", "ping", "resync", "shutdown"})
ALL_TYPES = GUEST_TYPES | HOST_TYPES

_ERROR_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ENTROPY_RE = re.compile(r"[0-9a-f]{32,128}")  # hex: 16 to 64 random bytes
_METRIC_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BIG = float(2**53)  # largest integer a JSON reader is sure to keep exact


def _text(max_len: int) -> Check:
    return lambda v, p: as_str(v, p, max_len)


def _int(lo: int, hi: int) -> Check:
    return lambda v, p: as_int(v, p, lo, hi)


def _num(v: object, p: str) -> object:
    return as_num(v, p, 0.0, _BIG)


def _phase_id(v: object, p: str) -> object:
    return as_str(v, p, 32, PHASE_ID_RE)


def _opt_phase_id(v: object, p: str) -> object:
    return None if v is None else _phase_id(v, p)


_IFACE_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # IFNAMSIZ - 1
MAX_IFACES = 64


def _iface_names(v: object, p: str) -> object:
    if not isinstance(v, list):
        raise bad(p, f"must be an array, got {json_type(v)}")
    if len(v) > MAX_IFACES:
        raise bad(p, f"at most {MAX_IFACES} entries, got {len(v)}")
    for i, name in enumerate(v):
        as_str(name, f"{p}[{i}]", 15, _IFACE_RE)
    return v


def _protocol(v: object, p: str) -> object:
    version = as_int(v, p, 0, 2**31)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "version_mismatch", f"{p}: agent speaks protocol {version}, host {PROTOCOL_VERSION}"
        )
    return version


def _metrics(v: object, p: str) -> object:
    """A flat object of scalars: enough for tool figures, cheap to check."""
    metrics = as_object(v, p)
    if len(metrics) > MAX_METRICS:
        raise bad(p, f"at most {MAX_METRICS} entries, got {len(metrics)}")
    for key, value in metrics.items():
        path = f"{p}.{key[:64]}"
        if not _METRIC_KEY_RE.fullmatch(key):
            raise bad(path, "metric names are 1..64 of [A-Za-z0-9_.-]")
        if isinstance(value, str):
            as_str(value, path, 256)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            as_num(value, path, -_BIG, _BIG)
        elif value is not None and not isinstance(value, bool):
            raise bad(path, f"must be a string, number, boolean or null, got {json_type(value)}")
    return metrics


def _epoch(v: object, p: str) -> object:
    return as_num(v, p, 0, 2**40)


def _entropy(v: object, p: str) -> object:
    return as_str(v, p, 128, _ENTROPY_RE)


def _phase(v: object, p: str) -> object:
    try:
        return PhaseSpec.from_dict(v)
    except ProtocolError as exc:
        # Re-root the spec's field path under this message's field.
        raise ProtocolError(exc.code, f"{p}.{exc.message}", field=f"{p}.{exc.field}") from None


_SCHEMA: dict[str, dict[str, Check]] = {
    "hello": {
        "agent_version": _text(64),
        "protocol": _protocol,
        "kernel": _text(256),
        "cpus": _int(1, 4096),
        "mem_total_kib": _int(0, 2**53),
        "scratch": _text(MAX_TEXT),
        "net_ifaces": _iface_names,
    },
    "pong": {"t": _num},
    "phase_started": {"phase_id": _phase_id, "t": _num},
    "sample": {
        "phase_id": _opt_phase_id,
        "t": _num,
        "interval_s": _num,
        "cpu_busy": _num,
        "mem_used_kib": _int(0, 2**53),
        "mem_total_kib": _int(0, 2**53),
        "read_iops": _num,
        "write_iops": _num,
        "read_bps": _num,
        "write_bps": _num,
        "forks_ps": _num,
        "faults_ps": _num,
    },
    "phase_result": {
        "phase_id": _phase_id,
        "kind": lambda v, p: as_choice(v, p, KINDS),
        "duration_s": _num,
        "exit_code": _int(-255, 255),
        "metrics": _metrics,
    },
    "error": {
        "phase_id": _opt_phase_id,
        "code": lambda v, p: as_str(v, p, 32, _ERROR_CODE_RE),
        "message": _text(MAX_TEXT),
    },
    "bye": {},
    "run": {"phase": _phase},
    "stop": {"phase_id": _phase_id},
    "ping": {},
    "resync": {"epoch_s": _epoch, "entropy": _entropy},
    "shutdown": {},
}


def validate_message(obj: Mapping[str, object], allowed: Collection[str] = ALL_TYPES) -> Message:
    """Check an already-parsed object against the schema of its type; returns it as a dict."""
    if "v" not in obj:
        raise bad("v", "missing field")
    version = obj["v"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise bad("v", f"must be an integer, got {json_type(version)}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("version_mismatch", f"v: got {version}, expected {PROTOCOL_VERSION}")
    if "type" not in obj:
        raise bad("type", "missing field")
    kind = obj["type"]
    if not isinstance(kind, str):
        raise bad("type", f"must be a string, got {json_type(kind)}")
    if kind not in _SCHEMA or kind not in allowed:
        raise ProtocolError("unknown_type", f"type: {kind[:64]!r} is not expected here")
    schema = _SCHEMA[kind]
    check_keys(obj, kind, ("v", "type", *schema))
    for name, check in schema.items():
        check(obj[name], f"{kind}.{name}")
    return dict(obj)


def message(msg_type: str, /, **fields: object) -> Message:
    """Build (not yet validate) a message: ``message("ping")``."""
    return {"v": PROTOCOL_VERSION, "type": msg_type, **fields}


def encode_message(msg: Mapping[str, object]) -> bytes:
    """Validate and serialise one message as an ASCII JSON line ending in a newline."""
    validate_message(msg)
    line = json.dumps(msg, separators=(",", ":"), allow_nan=False, ensure_ascii=True).encode()
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError("oversized", f"{msg['type']} message is {len(line)} bytes")
    return line + b"\n"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in object")
    return obj


def decode_line(line: bytes, allowed: Collection[str] = ALL_TYPES) -> Message:
    """Parse and validate one line (without its newline)."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError("oversized", f"line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_encoding", f"line is not UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        # RecursionError: deeply nested arrays blow the C scanner's stack guard.
        raise ProtocolError("malformed_json", f"not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", f"a message must be a JSON object, got {json_type(obj)}")
    return validate_message(obj, allowed)


class LineDecoder:
    """Split a byte stream into validated messages, holding at most one line of bytes.

    ``feed`` raises ``ProtocolError`` for the first bad line it meets; the bad
    line is dropped, and the messages decoded before it plus the bytes after
    it are kept, so a caller that wants to carry on (the guest does) just
    calls ``feed(b"")`` to get them. An over-long line is dropped as its bytes
    arrive rather than buffered: memory stays bounded by ``max_line_bytes``
    plus one chunk.
    """

    def __init__(self, allowed: Collection[str] = ALL_TYPES, max_line_bytes: int = MAX_LINE_BYTES):
        self._allowed = frozenset(allowed)
        self._max = max_line_bytes
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop bytes up to its newline
        self._ready: list[Message] = []

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a newline (for tests of the memory bound)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out, self._ready = self._ready, []
        try:
            self._drain(out)
        except ProtocolError:
            self._ready = out
            raise
        return out

    def feed_all(self, data: bytes) -> list[Message | ProtocolError]:
        """Like ``feed`` but never raises: messages and errors in stream order."""
        items: list[Message | ProtocolError] = []
        while True:
            try:
                items.extend(self.feed(data))
                return items
            except ProtocolError as exc:
                items.extend(self._ready)
                self._ready = []
                items.append(exc)
                data = b""  # the rest of the stream is still buffered

    def _drain(self, out: list[Message]) -> None:
        buf = self._buf
        while True:
            if self._skipping:
                nl = buf.find(b"\n")
                if nl < 0:
                    buf.clear()
                    return
                del buf[: nl + 1]
                self._skipping = False
                continue
            nl = buf.find(b"\n", 0, self._max + 1)
            if nl < 0:
                if len(buf) > self._max:
                    end = buf.find(b"\n")
                    if end < 0:
                        buf.clear()
                        self._skipping = True
                    else:
                        del buf[: end + 1]
                    raise ProtocolError("oversized", f"line exceeds {self._max} bytes")
                return
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if line.strip():  # blank lines are harmless keep-alives, not errors
                out.append(decode_line(line, self._allowed))


__all__ = [
    "AGENT_VERSION",
    "ALL_TYPES",
    "GUEST_TYPES",
    "HOST_TYPES",
    "MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "LineDecoder",
    "Message",
    "PhaseSpec",
    "ProtocolError",
    "decode_line",
    "encode_message",
    "message",
    "validate_message",
]
