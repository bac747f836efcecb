"""How a ``ShadowSession`` boots: restored from its image's template, or cold.

A mixin of ``ShadowSession`` (kept apart so the session module stays the
session). With a template store (``shadow.templates``) and a template of the
shadow's inputs, the shadow is restored: a new overlay backed by the
template's frozen one, a fresh scratch disk, ``restore_shadow``, the agent's
hello, then ``resync`` (the guest's clock, fresh entropy for its random
pool). Any failure there tears the shadow down completely and boots it cold,
saying why (``ShadowRecord.boot_reason``); a template that failed is
discarded. A cold boot of an image with no template saves one from that
very shadow once its agent is up (a target OS: once it is idle) and goes on
restored from it: no extra guest boots, about 3 s more for that shadow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vmshadow.domain.errors import (
    AgentError,
    HypervisorError,
    ImageError,
    ShadowBootError,
)
from vmshadow.domain.shadow import ShadowSpec
from vmshadow.hypervisor.disks import create_overlay, create_scratch
from vmshadow.hypervisor.filemodes import make_private_dir, private_disk
from vmshadow.image.shadowseed import write_shadow_seed
from vmshadow.shadow.targetos import wait_settled
from vmshadow.shadow.templates import (
    Template,
    TemplateStore,
    image_label,
    template_inputs,
    template_key,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from vmshadow.agent.host.adapter import AgentAdapter
    from vmshadow.domain.samples import UsagePoint
    from vmshadow.domain.shadow import ShadowSize
    from vmshadow.hypervisor.port import Hypervisor
    from vmshadow.image.files import ImageFiles
    from vmshadow.shadow.record import ShadowRecord

# A restored agent answers within about a second (0.5-1.5 s measured under
# TCG); one that has not in this long will not, and a cold boot is cheaper
# than the full hello timeout.
RESTORE_HELLO_S = 20.0
# Long enough for the guest's agent (it polls every 0.25 s) to see the host
# leave before its state is saved: restored, it then greets the next host.
HOST_GONE_S = 0.5
ENTROPY_BYTES = 32
QEMU_DRIVER = "QEMU"
COLD, RESTORED = "cold", "restored"
OWNER_FILE = "owner"


class TemplateBoot:
    """``ShadowSession``'s boot of one spec; ``self`` is the session."""

    if TYPE_CHECKING:  # what the session provides
        _hv: Hypervisor
        _image: ImageFiles
        _size: ShadowSize
        _scratch_cache: str
        _hello_timeout: float
        _abort: Callable[[], object] | None
        _templates: TemplateStore | None
        _guest_base: float | None
        record: ShadowRecord
        run_dir: Path
        spec: ShadowSpec

        @property
        def name(self) -> str: ...
        def _elapsed(self) -> float: ...
        def _series(self) -> list[UsagePoint]: ...
        def _start(self, spec: ShadowSpec, hello_timeout: float) -> None: ...
        def _connect(self, spec: ShadowSpec, hello_timeout: float) -> AgentAdapter: ...
        def _disconnect(self) -> None: ...
        def _tear_down(self, *, polite: bool = True) -> list[str]: ...

    def _boot_spec(self, spec: ShadowSpec, hello_timeout: float) -> None:
        store = self._templates
        if store is None:
            self._start(spec, hello_timeout)
            self._said_boot(COLD, "templates are off (shadow.templates)")
            return
        try:
            versions = self._hv.versions()
            if versions.get("driver") != QEMU_DRIVER:
                driver = versions.get("driver")
                raise ImageError(f"templates need libvirt's QEMU driver, not {driver}")
            inputs = template_inputs(
                self._image, spec, scratch_cache=self._scratch_cache, versions=versions
            )
        except (HypervisorError, ImageError, OSError) as exc:
            self._start(spec, hello_timeout)
            self._said_boot(COLD, f"no template: {exc}")
            return
        key = template_key(inputs)
        below = _below(spec)
        reason = "no template of this image yet"
        template: Template | None = None
        try:
            template = store.find(key, below)
        except ImageError as exc:
            store.discard(key)
            reason = f"{exc}; discarded"
        if template is not None:
            try:
                self._restore(spec, template)
                self._said_boot(RESTORED, "")
                return
            except (ShadowBootError, HypervisorError, AgentError, ImageError, OSError) as exc:
                reason = f"restoring template {key} failed: {_short(exc)}; discarded"
                self._clear_for_cold(exc)
                store.discard(key)
        self._start(spec, hello_timeout)
        self._said_boot(COLD, reason)
        self._save_template(store, spec, key, inputs, below, hello_timeout, reason)

    def _said_boot(self, boot: str, reason: str) -> None:
        self.record.boot = boot
        self.record.boot_reason = reason

    def _clear_for_cold(self, exc: BaseException) -> None:
        """Tear the failed shadow down completely before another boots in its place."""
        errors = self._tear_down(polite=False)
        if errors:  # never boot a second shadow over a first one still there
            raise HypervisorError("; ".join(errors)) from exc
        self._guest_base = None

    def _restore(self, spec: ShadowSpec, template: Template) -> None:
        self.spec = spec
        self._prepare_run_dir(spec)
        # Backed by the overlay the guest was saved with: what its page cache
        # and filesystem believe is on disk.
        create_overlay(template.overlay, spec.root_disk)
        private_disk(spec.root_disk)
        create_scratch(spec.scratch_disk, self._size.scratch_mib)
        if spec.target is not None:
            write_shadow_seed(spec.target.seed, spec.shadow_id)
        self.record.timings.prepared_s = self._elapsed()
        self._hv.restore_shadow(spec, template.saved)
        self.record.timings.boot_s = self._elapsed()
        client = self._connect(spec, min(RESTORE_HELLO_S, self._hello_timeout))
        try:
            agent_t = client.resync(time.time(), os.urandom(ENTROPY_BYTES), timeout=10.0)
        except AgentError as exc:
            raise ShadowBootError(
                f"the restored agent of {self.name} did not resync: {exc}"
            ) from exc
        now = self._elapsed()
        # The agent's clock went on from where the template was saved: its
        # samples land on the session clock through this pong, not the hello.
        self._guest_base = now - agent_t
        self.record.timings.agent_ready_s = now

    def _save_template(
        self,
        store: TemplateStore,
        spec: ShadowSpec,
        key: str,
        inputs: dict[str, object],
        below: tuple[tuple[Path, str], ...],
        hello_timeout: float,
        why_cold: str,
    ) -> None:
        """Save this freshly booted shadow as the template and go on restored from it."""
        with store.building(key, inputs, image_label(spec), below) as build:
            if build is None:
                return  # another shadow is saving it, or just did
            if spec.target is not None:
                # A target OS goes on booting for a while after its agent is up:
                # saved idle, every restore starts idle.
                wait_settled(
                    self._series, since=self.record.timings.agent_ready_s, check=self._abort
                )
            began = time.monotonic()
            try:
                self._disconnect()
                time.sleep(HOST_GONE_S)
                self._hv.save_shadow(self.name, build.state_file)
                template = store.finish(build, spec.root_disk)
                saved_s = time.monotonic() - began
                spec.scratch_disk.unlink()  # the restored shadow gets a fresh one
                self._restore(spec, template)
            except (ShadowBootError, HypervisorError, AgentError, ImageError, OSError) as exc:
                self._clear_for_cold(exc)
                store.discard(key)
                self._start(spec, hello_timeout)
                self._said_boot(COLD, f"{why_cold}; saving a template failed: {_short(exc)}")
                return
        self._said_boot(
            COLD, f"{why_cold}: saved one from this boot in {saved_s:.1f} s and restored it"
        )

    def _prepare_run_dir(self, spec: ShadowSpec) -> None:
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        make_private_dir(self.run_dir, exist_ok=True)
        # Lets the reaper remove this folder if we die before the domain exists
        # (or after it is gone): the domain's metadata cannot tell it then.
        (self.run_dir / OWNER_FILE).write_text(spec.owner + "\n")


def _below(spec: ShadowSpec) -> tuple[tuple[Path, str], ...]:
    """What a template's frozen overlay sits on: the base, or the store image's chain."""
    if spec.target is not None:
        return spec.target.chain
    assert spec.base is not None, "a built-in shadow names its base"
    return ((spec.base, "qcow2"),)


def _short(exc: BaseException) -> str:
    return str(exc).split("; console:", 1)[0][:300]


__all__ = ["COLD", "OWNER_FILE", "RESTORED", "TemplateBoot"]
