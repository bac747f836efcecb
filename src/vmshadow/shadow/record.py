"""What a shadow session measured (``ShadowRecord``), kept apart from the session
so the modules that boot it (``shadow.templateboot``) can name it too."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmshadow.domain.samples import UsagePoint
from vmshadow.domain.shadow import Accelerator, OsIdle, ShadowOs
from vmshadow.shadow.profiling import PhaseRun


@dataclass
class Timings:
    """Seconds from the moment the session was asked for, on the host's monotonic clock."""

    prepared_s: float = 0.0  # disks made
    boot_s: float = 0.0  # libvirt reports the domain running
    agent_ready_s: float = 0.0  # the agent said hello


@dataclass
class ShadowRecord:
    """Everything a session measured; the series holds both views."""

    shadow_id: str
    accelerator: Accelerator
    hello: dict[str, object] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    series: list[UsagePoint] = field(default_factory=list)
    phases: list[PhaseRun] = field(default_factory=list)
    peak_qemu_rss_kib: int = 0
    qemu_cpu_s: float | None = None
    # For a store image: which OS the shadow ran, and the target OS at rest.
    shadow_os: ShadowOs | None = None
    os_idle: OsIdle | None = None
    # "restored" from the image's template, or "cold" (booted), and why cold.
    boot: str = ""
    boot_reason: str = ""

    def boot_text(self) -> str:
        """How the shadow came up, for every output: ``boot: restored`` or ``boot: cold (why)``."""
        if not self.boot:
            return ""
        return f"boot: {self.boot}" + (f" ({self.boot_reason})" if self.boot_reason else "")


__all__ = ["ShadowRecord", "Timings"]
