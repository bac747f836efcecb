"""Choose KVM or TCG by booting a real shadow, and remember the answer.

``/dev/kvm`` existing proves little: in a nested guest it can be present while
every KVM guest dies at boot (a KVM internal error, or ``-cpu host`` failing on
an MSR). So the probe boots the real shadow image under KVM and accepts KVM
only if the agent says hello in time; otherwise it falls back to TCG and says
why. The verdict is cached per host and software versions, since a probe boot
costs up to ``PROBE_TIMEOUT_S``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmshadow.domain.errors import ShadowBootError, VmshadowError
from vmshadow.domain.shadow import Accelerator
from vmshadow.hypervisor.port import Host
from vmshadow.image.files import ImageFiles

if TYPE_CHECKING:
    from vmshadow.config import Settings

PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class AcceleratorChoice:
    accelerator: Accelerator
    reason: str
    cached: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        return {"accelerator": self.accelerator.value, "reason": self.reason, "cached": self.cached}


# Bump when the probe or its verdict's wording changes, so cached verdicts are redone.
PROBE_VERSION = 2


def _cache_key(hv: Host) -> str:
    facts = {
        "probe": PROBE_VERSION,
        "uri": hv.uri,
        "versions": hv.versions(),
        "kernel": platform.release(),
        "node": platform.node(),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def choose_accelerator(
    hv: Host,
    image: ImageFiles,
    runs_dir: Path,
    cache_file: Path,
    *,
    setting: str = "auto",
) -> AcceleratorChoice:
    """KVM when a probe boot works, else TCG; ``setting`` may force one."""
    if setting == "tcg":
        return AcceleratorChoice(Accelerator.TCG, "TCG forced by configuration")
    if setting == "kvm":
        return AcceleratorChoice(Accelerator.KVM, "KVM forced by configuration")
    if not os.path.exists("/dev/kvm") and hv.uri.startswith("qemu:///"):
        return AcceleratorChoice(Accelerator.TCG, "TCG: /dev/kvm does not exist on this host")
    if not hv.supports_domain_type("kvm"):
        return AcceleratorChoice(Accelerator.TCG, "TCG: libvirt offers no kvm domain type here")
    key = _cache_key(hv)
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return AcceleratorChoice(Accelerator(cached["accelerator"]), cached["reason"], True)
    except (OSError, ValueError, KeyError):
        pass
    choice = _probe_kvm(hv, image, runs_dir)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"key": key, **choice.as_dict()}))
    return choice


def accelerator_for(hv: Host, image: ImageFiles, settings: Settings) -> AcceleratorChoice:
    """The accelerator as ``settings`` configure it, the verdict cached in the data folder."""
    return choose_accelerator(
        hv,
        image,
        settings.runs_dir,
        settings.data_dir / "accelerator.json",
        setting=settings.accelerator,
    )


def _probe_kvm(hv: Host, image: ImageFiles, runs_dir: Path) -> AcceleratorChoice:
    # Imported here: the session imports this module's siblings, not the other way.
    from vmshadow.shadow.session import ShadowSession

    try:
        with ShadowSession(
            hv, image, runs_dir, accelerator=Accelerator.KVM, hello_timeout_s=PROBE_TIMEOUT_S
        ) as session:
            ready = session.record.timings.agent_ready_s
        return AcceleratorChoice(Accelerator.KVM, f"KVM: a probe shadow booted in {ready:.1f} s")
    except ShadowBootError:
        # The usual case on nested hosts: the guest hangs or dies in KVM before
        # it prints a thing. One line is what the operator needs.
        return AcceleratorChoice(
            Accelerator.TCG,
            f"TCG: a KVM probe shadow did not reach its agent within {PROBE_TIMEOUT_S:.0f} s",
        )
    except VmshadowError as exc:
        first = str(exc).splitlines()[0][:200]
        return AcceleratorChoice(
            Accelerator.TCG,
            f"TCG: a KVM probe boot failed, so software emulation is used ({first})",
        )
