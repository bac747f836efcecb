"""Watching a launched VM from a store image until its guest is ready.

"Ready" is what a user waits for before logging in: the guest agent answers
and cloud-init has finished (the user, keys and user-data are in place). It
is recorded as an event after ``running``, with the addresses the guest
reports and, for user networking, the SSH command, so the UI, ``vmshadow
show`` and the API say it. Asked every few seconds, not every sample: an
agent that does not answer yet costs its call's timeout.
"""

from __future__ import annotations

import time
from typing import Any

from vmshadow.controller.context import Context
from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.transition import Transition
from vmshadow.domain.vm import GuestSetup, ssh_command
from vmshadow.hypervisor.port import Host
from vmshadow.image.userstore import BUILTIN

CHECK_EVERY_S = 5.0


class GuestReadyWatch:
    def __init__(self, ctx: Context, row: Transition, started_at: float) -> None:
        self.ctx, self.row = ctx, row
        self.started_at = started_at  # host monotonic seconds of the start
        # A resize's VM was ready long ago; the built-in image runs no cloud-init.
        self.done = row.image == BUILTIN or row.kind != "launch" or self._already_said()
        self.next_check = 0.0
        guest = GuestSetup.from_dict(row.guest) if row.guest else GuestSetup()
        self.user = guest.user
        self.timeout_s = ctx.settings.vm.guest_ready_timeout_s

    def _already_said(self) -> bool:
        """A controller that took over after a crash does not say it twice."""
        events = self.ctx.store.events(self.row.id)
        return any(e.message.startswith(("guest ready", "guest not ready")) for e in events)

    def poll(self, hv: Host) -> None:
        now = time.monotonic()
        if self.done or now < self.next_check:
            return
        self.next_check = now + CHECK_EVERY_S
        waited = now - self.started_at
        try:
            status = hv.guest_status(self.row.vm_name)
        except HypervisorError:
            status = None
        if status is None:
            # Not running (observe says so) or a host that cannot ask a guest
            # agent: nothing to wait for.
            self.done = True
            return
        if status.ready:
            self.done = True
            self._say_ready(hv, waited, status.cloud_init, status.errors, status.addresses)
        elif waited > self.timeout_s:
            self.done = True
            what = (
                "its guest agent does not answer"
                if not (status and status.agent)
                else ("cloud-init has not finished")
            )
            self.ctx.store.add_event(
                self.row.id,
                "warning",
                f"guest not ready {waited:.0f} s after start: {what} (does the image run "
                "cloud-init and qemu-guest-agent?)",
            )

    def _say_ready(
        self,
        hv: Host,
        waited: float,
        cloud_init: str | None,
        errors: tuple[str, ...],
        addresses: tuple[str, ...],
    ) -> None:
        info: dict[str, Any] = hv.full_vm_info(self.row.vm_name) or {}
        port = info.get("ssh_port")
        ssh = ssh_command(port if isinstance(port, int) else None, self.user)
        parts = [f"guest ready {waited:.0f} s after start: cloud-init {cloud_init}"]
        parts.append(f"addresses {', '.join(addresses)}" if addresses else "no address")
        if ssh:
            parts.append(ssh)
        level = "info"
        if errors:
            level = "warning"
            parts.append(f"cloud-init errors: {'; '.join(errors)[:500]}")
        self.ctx.store.add_event(self.row.id, level, "; ".join(parts))
