"""``AgentClient``: the host talking to one agent over any ``Transport``.

Failure modes, all bounded in time:

- the agent sends something malformed, oversized or out of order:
  ``ProtocolError`` (and the client is broken for good);
- the agent reports an error for a request (a tool exited non-zero, a
  request was refused): ``AgentReportedError``, a ``ProtocolError`` subclass;
  the client stays usable;
- the channel ends (agent exited, crashed or was killed):
  ``ProtocolError("closed")``;
- nothing arrives in time: ``TimeoutError``.

Exceptions raised by the transport itself (e.g. a libvirt error) pass through.
Samples that arrive outside ``run_phase`` (between phases) are discarded.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable

from vmshadow.agent.conversation import (
    AgentReportedError,
    Bye,
    Conversation,
    ErrorReport,
    Event,
    Hello,
    PhaseResult,
    PhaseStarted,
    Pong,
    Sample,
    State,
)
from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import GUEST_TYPES, LineDecoder, Message, encode_message, message
from vmshadow.agent.transport import Transport

RECV_CHUNK = 65536
OnSample = Callable[[Sample], None]


class AgentClient:
    def __init__(self, transport: Transport, *, sample_interval_s: float | None = None) -> None:
        """``sample_interval_s``: the agent's sampling period, which bounds how many
        samples a phase may carry (unknown: the fastest the guest can sample)."""
        self._transport = transport
        self._decoder = LineDecoder(GUEST_TYPES)
        self._inbox: deque[Message] = deque()
        self.conversation = Conversation(sample_interval_s)

    @property
    def hello(self) -> Hello | None:
        return self.conversation.hello

    # -- requests ------------------------------------------------------------------------
    def wait_hello(self, timeout: float) -> Hello:
        """The agent's hello (waits for it the first time; later calls return it)."""
        deadline = time.monotonic() + timeout
        while self.conversation.hello is None:
            self._next(deadline, "hello")
        return self.conversation.hello

    def ping(self, timeout: float = 10.0) -> float:
        """Round trip to the agent; returns the agent's clock (seconds since it started)."""
        deadline = time.monotonic() + timeout
        self.wait_hello(timeout)
        self._send(message("ping"))
        self.conversation.sent_ping()
        while True:
            event = self._next(deadline, "pong")
            if isinstance(event, Pong):
                return event.t
            self._raise_if_final(event, "ping")

    def resync(self, epoch_s: float, entropy: bytes, timeout: float = 10.0) -> float:
        """After a restore: set the guest's clock to ``epoch_s`` and mix ``entropy``
        into its random pool; returns the agent's clock, like ``ping``."""
        deadline = time.monotonic() + timeout
        self.wait_hello(timeout)
        self._send(message("resync", epoch_s=epoch_s, entropy=entropy.hex()))
        self.conversation.sent_ping()  # answered with a pong, like a ping
        while True:
            event = self._next(deadline, "pong")
            if isinstance(event, Pong):
                return event.t
            self._raise_if_final(event, "resync")

    def run_phase(
        self,
        spec: PhaseSpec,
        on_sample: OnSample | None = None,
        timeout: float = 600.0,
        *,
        silence_timeout: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseResult:
        """Run one phase; every sample read meanwhile goes to ``on_sample``.

        ``stop_when`` is asked after each sample (once ``on_sample`` has seen it):
        True sends ``stop`` once, and the phase ends early with its result.

        ``timeout`` bounds the whole call; ``silence_timeout`` (optional) bounds
        the gap between two messages, to notice a hung agent before the end
        of a long phase (the agent samples every interval, so it is never
        quiet for long while healthy).
        """
        deadline = time.monotonic() + timeout
        self.wait_hello(timeout)
        self.conversation.sent_run(spec.phase_id, spec.kind, spec.duration_s)
        # encode_message validates the spec again, exactly as the guest will.
        self._send(message("run", phase=spec.to_dict()))
        what = f"the result of phase {spec.phase_id}"
        stopped = False
        while True:
            event = self._next(deadline, what, silence_timeout)
            if isinstance(event, Sample):
                if on_sample is not None:
                    on_sample(event)
                if not stopped and stop_when is not None and stop_when():
                    stopped = True
                    self._send(message("stop", phase_id=spec.phase_id))
            elif isinstance(event, PhaseResult):
                return event
            elif not isinstance(event, PhaseStarted | Pong):
                self._raise_if_final(event, f"phase {spec.phase_id}")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the agent to stop and wait for its ``bye`` (or the end of the stream)."""
        state = self.conversation.state
        if state is State.CLOSED:
            return
        # The agent may have closed its end already (it exits after a SIGTERM's
        # bye): what it said before that is still read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(message("shutdown"))
        self.conversation.sent_shutdown()
        if state is State.BROKEN:
            return  # the stream cannot be read reliably any more; the request is enough
        deadline = time.monotonic() + timeout
        try:
            while not isinstance(self._next(deadline, "bye"), Bye):
                pass
        except ProtocolError as exc:
            if exc.code != "closed":  # an agent that just exits has also stopped
                raise

    def close(self) -> None:
        self._transport.close()

    # -- plumbing ------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        self._transport.send(encode_message(msg))

    @staticmethod
    def _raise_if_final(event: Event, what: str) -> None:
        if isinstance(event, ErrorReport):
            raise AgentReportedError(event)
        if isinstance(event, Bye):
            raise ProtocolError("closed", f"the agent said bye during {what}")

    def _next(self, deadline: float, what: str, silence: float | None = None) -> Event:
        """The next message as a checked event; reads from the transport as needed."""
        while not self._inbox:
            self._fill(deadline, what, silence)
        return self.conversation.receive(self._inbox.popleft())

    def _fill(self, deadline: float, what: str, silence: float | None) -> None:
        if self.conversation.state is State.BROKEN:
            failure = self.conversation.failure
            raise ProtocolError("broken", f"the conversation already failed: {failure}")
        left = deadline - time.monotonic()
        wait = left if silence is None else min(left, silence)
        if left <= 0:
            raise TimeoutError(f"timed out awaiting {what} from the agent")
        try:
            data = self._transport.recv(RECV_CHUNK, wait)
        except TimeoutError:
            if wait < left:
                raise TimeoutError(
                    f"the agent was silent for {silence:.0f} s awaiting {what}"
                ) from None
            raise TimeoutError(f"timed out awaiting {what} from the agent") from None
        if not data:
            self.conversation.state = State.CLOSED
            raise ProtocolError(
                "closed", f"the agent closed the channel (exited or crashed) awaiting {what}"
            )
        try:
            self._inbox.extend(self._decoder.feed(data))
        except ProtocolError as exc:
            self.conversation.state, self.conversation.failure = State.BROKEN, exc
            raise


__all__ = [
    "AgentClient",
    "AgentReportedError",
    "Hello",
    "OnSample",
    "PhaseResult",
    "ProtocolError",
    "Sample",
    "Transport",
]
