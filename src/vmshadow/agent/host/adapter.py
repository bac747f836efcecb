"""``AgentAdapter``: ``AgentClient`` as the rest of vmshadow sees it.

``AgentClient`` speaks the wire protocol and, being guest-side code too, knows
only the standard library's errors and its own ``ProtocolError``. This adapter
translates them once, here, so callers catch ``AgentError`` (or
``VmshadowError``) and nothing from the protocol:

- nothing arrived in time (``TimeoutError``): ``AgentTimeout``;
- the agent answered a request with an error (``AgentReportedError``):
  ``AgentRefused``, carrying the agent's ``code``; the link stays usable;
- anything else from the agent or its channel (malformed, out of order, the
  channel closed, a broken pipe): ``AgentError``.

The messages are the client's own, unchanged. A ``VmshadowError`` the
transport raises itself (e.g. ``HypervisorError`` from the libvirt channel)
passes through.

>>> with AgentAdapter(hypervisor.open_agent_channel(name)) as agent:  # doctest: +SKIP
...     agent.wait_hello(timeout=30.0)
...     result = agent.run_phase(spec, on_sample=print)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from vmshadow.agent.client import AgentClient, OnSample
from vmshadow.agent.conversation import AgentReportedError, Hello, PhaseResult
from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.transport import Transport
from vmshadow.domain.errors import AgentError


class AgentTimeout(AgentError):
    """Nothing arrived from the agent in time (it may be booting, busy or hung)."""


class AgentRefused(AgentError):
    """The agent answered a request with an error; ``code`` is the agent's own."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except AgentReportedError as exc:
        raise AgentRefused(str(exc), exc.code) from exc
    except ProtocolError as exc:
        raise AgentError(str(exc)) from exc
    # TimeoutError is an OSError: it must be caught first.
    except TimeoutError as exc:
        raise AgentTimeout(str(exc)) from exc
    except OSError as exc:
        # A channel that breaks mid-write (the agent's process died): a pipe's
        # BrokenPipeError, a socket's reset.
        raise AgentError(f"the agent's channel failed: {exc}") from exc


class AgentAdapter:
    """One agent over one transport; every failure is an ``AgentError``."""

    def __init__(self, transport: Transport, *, sample_interval_s: float | None = None) -> None:
        self.client = AgentClient(transport, sample_interval_s=sample_interval_s)

    @property
    def hello(self) -> Hello | None:
        return self.client.hello

    def wait_hello(self, timeout: float) -> Hello:
        with _translated():
            return self.client.wait_hello(timeout)

    def ping(self, timeout: float = 10.0) -> float:
        with _translated():
            return self.client.ping(timeout)

    def run_phase(
        self,
        spec: PhaseSpec,
        on_sample: OnSample | None = None,
        timeout: float = 600.0,
        *,
        silence_timeout: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseResult:
        with _translated():
            return self.client.run_phase(
                spec, on_sample, timeout, silence_timeout=silence_timeout, stop_when=stop_when
            )

    def resync(self, epoch_s: float, entropy: bytes, timeout: float = 10.0) -> float:
        with _translated():
            return self.client.resync(epoch_s, entropy, timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        with _translated():
            self.client.shutdown(timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["AgentAdapter", "AgentRefused", "AgentTimeout", "OnSample"]
