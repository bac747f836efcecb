"""One shadow from boot to destruction.

``ShadowSession`` is a context manager: entering it creates the run folder,
the overlay and scratch disks and the transient domain, and waits for the
agent's hello; leaving it, on every path (success, error, Ctrl-C, timeout),
asks the agent to stop, destroys the domain and deletes the run folder with
its disks. A failure while entering cleans up before it raises.

Given a ``TargetOsImage`` (``shadow.targetos``) it boots the store image's
own OS first and measures it at idle; when that OS cannot host the agent it
destroys that shadow completely and boots the built-in OS in its place,
recording which OS ran and why (``ShadowRecord.shadow_os``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from vmshadow.agent.conversation import Hello, Sample
from vmshadow.agent.host.adapter import AgentAdapter, AgentRefused, AgentTimeout
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.errors import (
    AgentError,
    HypervisorError,
    ImageError,
    ShadowAborted,
    ShadowBootError,
    VmshadowError,
)
from vmshadow.domain.samples import UsagePoint
from vmshadow.domain.shadow import Accelerator, ShadowOs, ShadowSize, ShadowSpec
from vmshadow.hypervisor.disks import create_overlay, create_scratch
from vmshadow.hypervisor.filemodes import private_disk
from vmshadow.hypervisor.port import Hypervisor
from vmshadow.image.files import ImageFiles
from vmshadow.image.shadowseed import write_shadow_seed
from vmshadow.shadow.hostsampler import HostSampler
from vmshadow.shadow.options import SessionOptions, require_image, session_options
from vmshadow.shadow.profiling import PhaseRun, guest_point
from vmshadow.shadow.record import ShadowRecord, Timings
from vmshadow.shadow.targetos import (
    TARGET_HELLO_FACTOR,
    TargetOsImage,
    fallback_reason,
    measure_idle,
    target_spec,
)
from vmshadow.shadow.templateboot import OWNER_FILE, TemplateBoot
from vmshadow.shadow.templates import TemplateStore

OnPoint = Callable[[UsagePoint], None]
HELLO_POLL_S = 1.0  # how often a boot that waits for the agent asks whether to go on
SHADOW_NET_IFACES = ("lo",)  # loopback only: a shadow has no network


def new_shadow_id() -> str:
    return uuid.uuid4().hex[:12]


class ShadowSession(TemplateBoot):
    def __init__(
        self,
        hypervisor: Hypervisor,
        image: ImageFiles,
        runs_dir: Path,
        *,
        accelerator: Accelerator,
        size: ShadowSize | None = None,
        hello_timeout_s: float = 60.0,
        sample_interval_s: float = 1.0,
        scratch_cache: str = "none",
        transition_id: str | None = None,
        on_point: OnPoint | None = None,
        shadow_id: str | None = None,
        abort: Callable[[], object] | None = None,
        templates: TemplateStore | None = None,
    ) -> None:
        self._hv = hypervisor
        self._templates = templates
        # Where the agent's clock starts on the session's (set by a restore's resync).
        self._guest_base: float | None = None
        self._image = image
        self._size = size or ShadowSize()
        self._hello_timeout = hello_timeout_s
        self._interval = sample_interval_s
        self._scratch_cache = scratch_cache
        self._on_point = on_point
        # Called about once a second while the boot waits for the agent; it raises
        # to abandon the boot (a cancelled transition should not wait out the
        # hello timeout with its shadow running). The session cleans up first.
        self._abort = abort
        self._lock = threading.Lock()
        sid = shadow_id or new_shadow_id()
        self.run_dir = runs_dir / sid
        self.record = ShadowRecord(shadow_id=sid, accelerator=accelerator)
        self._builtin_spec = ShadowSpec(
            shadow_id=sid,
            size=self._size,
            accelerator=accelerator,
            kernel=image.kernel,
            initrd=image.initrd,
            root_disk=self.run_dir / "root.qcow2",
            scratch_disk=self.run_dir / "scratch.img",
            console_log=self.run_dir / "console.log",
            run_dir=self.run_dir,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            transition_id=transition_id,
            owner=f"{socket.gethostname()}:{os.getpid()}",
            base=image.base,
        )
        self.spec = self._builtin_spec
        self._target = image if isinstance(image, TargetOsImage) else None
        if self._target is not None and self._target.target is not None:
            self.spec = target_spec(self.spec, self._target.target)
        self._client: AgentAdapter | None = None
        self._sampler: HostSampler | None = None
        self._t0 = time.monotonic()
        self._closed = False

    @property
    def name(self) -> str:
        return self.spec.name

    # -- entering ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self._boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        errors = self.close()
        # Never hide the error that brought us here behind a cleanup error.
        if errors and exc_type is None:
            raise HypervisorError("; ".join(errors))

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def _boot(self) -> None:
        # A store image's own OS first; one that cannot host the agent is
        # destroyed completely and the built-in OS stands in, saying why.
        target = self._target
        reason = target.unusable if target is not None else ""
        if target is not None and self.spec.target is not None:
            try:
                self._boot_spec(self.spec, self._hello_timeout * TARGET_HELLO_FACTOR)
                self.record.os_idle = measure_idle(
                    self,
                    self._series,
                    since=self.record.timings.agent_ready_s,
                    check=self._abort,
                )
                self.record.shadow_os = ShadowOs(target.image_name, "target")
                return
            except (ShadowBootError, HypervisorError, ImageError, AgentError, ShadowAborted) as exc:
                reason = fallback_reason(exc, self._console_text(), self._elapsed())
                # No polite stop: an agent that never said hello cannot say bye.
                self._clear_for_cold(exc)
        if target is not None:
            self.record.shadow_os = ShadowOs(target.image_name, "builtin", reason)
        self._boot_spec(self._builtin_spec, self._hello_timeout)

    def _start(self, spec: ShadowSpec, hello_timeout: float) -> None:
        """A cold boot: the guest's kernel from the start."""
        self.spec = spec
        self._prepare_run_dir(spec)
        if spec.target is None:
            self._image.verify_base()
            create_overlay(self._image.base, spec.root_disk)
        else:
            top, fmt = spec.target.chain[0]
            create_overlay(top, spec.root_disk, backing_format=fmt)
            write_shadow_seed(spec.target.seed, spec.shadow_id)
        private_disk(spec.root_disk)
        create_scratch(spec.scratch_disk, self._size.scratch_mib)
        self.record.timings.prepared_s = self._elapsed()
        self._hv.start_shadow(spec, scratch_cache=self._scratch_cache)
        self.record.timings.boot_s = self._elapsed()
        self._connect(spec, hello_timeout)

    def _connect(self, spec: ShadowSpec, hello_timeout: float) -> AgentAdapter:
        """Sample the running domain, and wait for its agent's hello."""
        self._sampler = HostSampler(
            lambda: self._hv.counters(self.name),
            self._add_point,
            interval_s=self._interval,
            t0=self._t0,
        )
        self._sampler.start()
        client = AgentAdapter(
            self._hv.open_agent_channel(self.name), sample_interval_s=self._interval
        )
        self._client = client
        try:
            hello = self._wait_hello(client, hello_timeout)
        except (AgentError, HypervisorError) as exc:
            raise ShadowBootError(
                f"shadow {self.name} did not reach its agent within "
                f"{hello_timeout:.0f} s ({exc}); console: {self.console_tail()}"
            ) from exc
        if hello.net_ifaces != SHADOW_NET_IFACES:
            # The domain XML defines no interface; this is the guest's own view of
            # it, so a wrong image or libvirt default cannot quietly add a network.
            raise ShadowBootError(
                f"shadow {self.name} is not isolated: its guest lists network interfaces "
                f"{list(hello.net_ifaces)}, a shadow may have only {list(SHADOW_NET_IFACES)}"
            )
        self.record.hello = hello.as_dict()
        self.record.timings.agent_ready_s = self._elapsed()
        return client

    def _disconnect(self) -> None:
        """Leave the agent (not stopping it) and stop sampling; the domain runs on."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._sampler is not None:
            self._sampler.stop()
            self.record.peak_qemu_rss_kib = max(
                self.record.peak_qemu_rss_kib, self._sampler.peak_rss_kib
            )
            self._sampler = None

    def _wait_hello(self, client: AgentAdapter, timeout: float) -> Hello:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return client.wait_hello(timeout=max(0.0, min(HELLO_POLL_S, left)))
            except AgentTimeout:
                if left <= HELLO_POLL_S:
                    raise
                if self._abort is not None:
                    self._abort()

    # -- measuring ---------------------------------------------------------------------
    def _series(self) -> list[UsagePoint]:
        with self._lock:
            return list(self.record.series)

    def _add_point(self, point: UsagePoint) -> None:
        with self._lock:
            self.record.series.append(point)
        if self._on_point is not None:
            self._on_point(point)

    def run_phase(
        self,
        spec: PhaseSpec,
        *,
        deadline: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseRun:
        """Run one phase in the guest while both views sample it.

        ``stop_when`` is asked after each guest sample; True ends the phase early
        (adaptive profiling: the figures are stable)."""
        if self._client is None or self._sampler is None:
            raise ShadowAborted("the shadow is not running")
        timeout = float(spec.duration_s * 3 + 30)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShadowAborted(f"deadline passed before phase {spec.phase_id}")
            timeout = min(timeout, left)
        started = self._elapsed()
        self._sampler.set_phase(spec.phase_id)
        stopped: list[bool] = []

        def stop() -> bool:
            # Remembered so the run says it ended early (the result alone cannot).
            if stop_when is not None and stop_when():
                stopped.append(True)
                return True
            return False

        try:
            result = self._client.run_phase(
                spec,
                on_sample=self._add_guest_sample,
                timeout=timeout,
                stop_when=stop if stop_when is not None else None,
            )
        except AgentTimeout as exc:
            raise ShadowAborted(f"phase {spec.phase_id} ran past its time limit") from exc
        except AgentRefused as exc:
            raise AgentError(f"the agent could not run phase {spec.phase_id}: {exc}") from exc
        except AgentError as exc:
            if not self._hv.is_running(self.name):
                raise ShadowAborted(
                    f"the shadow stopped during phase {spec.phase_id} (its QEMU process "
                    f"exited); console: {self.console_tail(3)}"
                ) from exc
            raise AgentError(f"agent broke the protocol in phase {spec.phase_id}: {exc}") from exc
        finally:
            self._sampler.set_phase(None)
        run = PhaseRun(
            spec=spec,
            started_s=started,
            ended_s=self._elapsed(),
            result=result.as_dict(),
            stopped=bool(stopped),
        )
        self.record.phases.append(run)
        return run

    def _add_guest_sample(self, s: Sample) -> None:
        self._add_point(guest_point(s, self._guest_offset()))

    def _guest_offset(self) -> float:
        """Guest sample times count from agent start; shift them onto the session clock."""
        if self._guest_base is not None:
            return self._guest_base
        return self.record.timings.agent_ready_s

    def _console_text(self) -> str:
        try:
            return self.spec.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = 8) -> str:
        text = self._console_text()
        tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(tail) or "(no console output)"

    # -- leaving -----------------------------------------------------------------------
    def close(self, *, polite: bool = True) -> list[str]:
        """Stop everything this session made; returns cleanup errors. Idempotent.

        ``polite=False`` skips asking the agent to stop (up to 3 s) when someone
        waits on the teardown, e.g. a user who has just confirmed.
        """
        if self._closed:
            return []
        self._closed = True
        return self._tear_down(polite=polite)

    def _tear_down(self, *, polite: bool = True) -> list[str]:
        """Destroy the domain and delete the run folder; the session may boot again."""
        errors: list[str] = []
        if self._client is not None:
            # The domain is destroyed next anyway; a polite stop is best effort.
            if polite:
                with contextlib.suppress(VmshadowError):
                    self._client.shutdown(timeout=3.0)
            self._client.close()
            self._client = None
        if self._sampler is not None:
            self._sampler.stop()
            self.record.peak_qemu_rss_kib = max(
                self.record.peak_qemu_rss_kib, self._sampler.peak_rss_kib
            )
            self.record.qemu_cpu_s = self._sampler.qemu_cpu_s
            self._sampler = None
        try:
            self._hv.destroy(self.name)
        except HypervisorError as exc:
            errors.append(str(exc))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.run_dir.exists():
            errors.append(f"could not remove {self.run_dir}")
        return errors


__all__ = [
    "OWNER_FILE",
    "SessionOptions",
    "ShadowRecord",
    "ShadowSession",
    "Timings",
    "new_shadow_id",
    "require_image",
    "session_options",
]
