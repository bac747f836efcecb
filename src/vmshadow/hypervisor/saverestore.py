"""Saving a booted shadow's running state, and starting shadows from it.

A mixin of ``LibvirtHypervisor`` (which holds ``_conn``), one of the few
modules that import ``libvirt``. A save stops the domain and writes its
memory and device state to a file (``virDomainSaveFlags``); a restore starts
a new domain from that file (``virDomainRestoreFlags``). The file's header
names the domain it was saved from, and libvirt 9.0 will restore it under no
other name or UUID: each restore rewrites the header for the shadow being
started (``hypervisor.savefile``), under a lock on the file, and puts the
original back, so one file serves every shadow of a template.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import libvirt

from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.shadow import ShadowSpec
from vmshadow.hypervisor.domainxml import restored_shadow_xml
from vmshadow.hypervisor.savefile import (
    SavedState,
    parse_region,
    rewrite_region,
    swapped_header,
)


class SaveRestoreMixin:
    _conn: Any

    def _lookup(self, name: str) -> Any | None:  # provided by LibvirtHypervisor
        raise NotImplementedError

    def save_shadow(self, name: str, state_file: Path) -> None:
        """Save the running shadow ``name`` to ``state_file``; the domain is gone after."""
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(f"cannot save shadow {name}: it is not running")
        try:
            # RUNNING: a restore resumes the guest at once, whatever the default.
            dom.saveFlags(str(state_file), None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot save shadow {name} to {state_file}: {exc}") from exc

    def restore_shadow(self, spec: ShadowSpec, saved: SavedState) -> None:
        """Start shadow ``spec`` from ``saved``: a transient domain, like ``start_shadow``.

        ``spec``'s overlay must already exist, backed by the frozen overlay
        (``saved.root_chain[0]``), as must its scratch disk (and seed)."""
        try:
            saved_xml = parse_region(saved.header, where=str(saved.state_file)).xml
            xml = restored_shadow_xml(saved_xml, spec, saved.root_chain, uuid=str(uuid.uuid4()))
        except (ValueError, SyntaxError) as exc:
            raise HypervisorError(
                f"cannot restore shadow {spec.name}: the saved XML is unusable ({exc})"
            ) from exc
        replacement = rewrite_region(saved.header, xml)
        with swapped_header(saved.state_file, saved.header, replacement):
            try:
                # The header now holds this XML; giving it again as dxml would only
                # repeat libvirt's check that the two agree.
                running = libvirt.VIR_DOMAIN_SAVE_RUNNING
                self._conn.restoreFlags(str(saved.state_file), None, running)
            except libvirt.libvirtError as exc:
                raise HypervisorError(
                    f"cannot restore shadow {spec.name} from {saved.state_file}: {exc}"
                ) from exc


__all__ = ["SaveRestoreMixin"]
