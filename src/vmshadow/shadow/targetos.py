"""A shadow of the target's own OS: what it boots, its idle footprint, and why
the built-in OS stands in when the target's cannot host the agent.

A transition that names a store image gets a shadow of that image: the same
kernel, init system and services its VM will run, so the prediction covers
what the OS itself costs. ``ShadowSession`` boots it when its image is a
``TargetOsImage`` (the built-in image's files, kept as the fallback, plus
the store image): a copy-on-write overlay of the image, the seed of
``image.shadowseed`` and the tools disk of ``image.toolsdisk``. It then
runs a short idle phase (the OS alone, at rest) before anyone's profile.

An image that cannot host the agent (no cloud-init, no python3, not x86_64,
or simply not up within the boot timeout) is destroyed completely and the
shadow boots the built-in OS instead; the session's record says which OS ran
and why (``ShadowOs``), and every output shows it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vmshadow.agent.phasespec import IdleParams, PhaseSpec
from vmshadow.domain.errors import ShadowBootError, VmshadowError
from vmshadow.domain.prediction import idle_footprint
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.shadow import IDLE_PHASE_ID, OsIdle, ShadowSpec, TargetOs
from vmshadow.image.files import ImageFiles
from vmshadow.image.shadowseed import CONSOLE_PREFIX
from vmshadow.image.toolsdisk import ensure_tools_disk
from vmshadow.image.userstore import BUILTIN
from vmshadow.shadow.profiling import PhaseRunner

IDLE_PHASE_S = 5  # long enough for several samples of each view, short beside a profile
# The agent starts early in the boot (cloud-init's first stage) and the rest
# of the boot goes on for 10-30 s under TCG: the idle phase waits until the
# host saw the guest quiet this many samples in a row (an idle Debian 12
# guest: 0.01-0.02 busy vCPU), for at most SETTLE_MAX_S.
SETTLE_BUSY = 0.1
SETTLE_SAMPLES = 3
SETTLE_MAX_S = 60.0
# A full OS boots firmware, a boot loader, its init system and cloud-init
# before the agent: 34-55 s under TCG on a busy 2-core host (Debian 12's test
# cloud image), where the built-in OS takes 7 s.
# Its boot gets this many times the shadow's hello timeout.
TARGET_HELLO_FACTOR = 2.0
SEED_FILE = "seed.iso"
_CLOUD_INIT = "Cloud-init v."  # how cloud-init's stages announce themselves on the console
_CONSOLE_REASON = re.compile(rf"{re.escape(CONSOLE_PREFIX)}\s*(.+?)(?:; powering off)?\s*$")


@dataclass(frozen=True)
class TargetImage:
    """A store image ready to boot as a shadow: its checked chain and the tools disk."""

    name: str
    chain: tuple[tuple[Path, str], ...]  # (file, format), the image first
    tools: Path


@dataclass(frozen=True)
class TargetOsImage(ImageFiles):
    """What a shadow of a store image boots: the store image when it can
    (``target``), the built-in image's files (the fields inherited) when not.

    Passed where a session takes its image, so every caller and every
    session factory carries it unchanged (``controller.context``).
    """

    image_name: str = BUILTIN
    target: TargetImage | None = None
    unusable: str = ""  # why ``target`` is None: the built-in OS stands in from the start


def shadow_image(
    builtin: ImageFiles,
    name: str,
    chain_of: Callable[[str], Sequence[tuple[Path, str]]],
    data_dir: Path,
) -> ImageFiles:
    """The image a shadow of ``name`` boots: ``builtin`` itself for the built-in
    OS, else a ``TargetOsImage``. ``chain_of`` resolves and checks the store
    image (``controller.context.user_image``'s chain); a store image that
    fails that check, or a tools disk that cannot be built, leaves the
    built-in OS to stand in, with the reason."""
    if name == BUILTIN:
        return builtin
    base = {f: getattr(builtin, f) for f in ("directory", "kernel", "initrd", "base", "manifest")}
    try:
        chain = tuple(chain_of(name))
        tools = ensure_tools_disk(data_dir)
    except VmshadowError as exc:
        return TargetOsImage(**base, image_name=name, unusable=f"not usable as a shadow: {exc}")
    return TargetOsImage(**base, image_name=name, target=TargetImage(name, chain, tools))


def target_spec(spec: ShadowSpec, target: TargetImage) -> ShadowSpec:
    """``spec`` (the built-in shadow's) turned into a shadow of the target OS."""
    seed = spec.run_dir / SEED_FILE
    return replace(spec, target=TargetOs(target.name, target.chain, seed, target.tools))


def settled(series: Sequence[UsagePoint], since: float) -> bool:
    """The host saw the guest quiet for the last SETTLE_SAMPLES samples after ``since``."""
    host = [p for p in series if p.source is Source.HOST and p.phase_id is None and p.t >= since][
        -SETTLE_SAMPLES:
    ]
    return len(host) == SETTLE_SAMPLES and all(p.busy_vcpus < SETTLE_BUSY for p in host)


def wait_settled(
    series: Callable[[], Sequence[UsagePoint]],
    *,
    since: float,
    max_s: float | None = None,
    check: Callable[[], object] | None = None,
    poll_s: float = 0.5,
) -> bool:
    """Wait until the boot's tail is over (``settled``), at most ``max_s``
    (SETTLE_MAX_S); False if it never was. ``check`` is called on every poll
    and may raise to give up (the session's abort: a cancelled transition)."""
    deadline = time.monotonic() + (SETTLE_MAX_S if max_s is None else max_s)
    while not settled(series(), since):
        if time.monotonic() >= deadline:
            return False
        if check is not None:
            check()
        time.sleep(poll_s)
    return True


def measure_idle(
    runner: PhaseRunner,
    series: Callable[[], Sequence[UsagePoint]],
    *,
    since: float,
    check: Callable[[], object] | None = None,
) -> OsIdle:
    """Once the boot has settled, run the idle phase and read the OS's
    footprint from what both views saw during it."""
    quiet = wait_settled(series, since=since, check=check)
    run = runner.run_phase(PhaseSpec(IDLE_PHASE_ID, "idle", IDLE_PHASE_S, IdleParams()))
    metrics = run.result.get("metrics")
    processes = metrics.get("processes") if isinstance(metrics, dict) else None
    return idle_footprint(
        [p for p in series() if p.phase_id == IDLE_PHASE_ID],
        processes=processes if isinstance(processes, int) else None,
        settled=quiet,
    )


def console_reason(console: str) -> str | None:
    """The last reason the seed's script gave on the console for not starting the agent."""
    found = None
    for line in console.splitlines():
        m = _CONSOLE_REASON.search(line)
        if m and not m.group(1).startswith("agent started"):
            found = m.group(1).strip()
    return found


def fallback_reason(exc: BaseException, console: str, elapsed_s: float) -> str:
    """Why the target OS could not host the agent, in a sentence for the user:
    the seed script's own words when it gave up, else what the console shows."""
    said = console_reason(console)
    if said:
        return f"{said} (after {elapsed_s:.0f} s)"
    if not isinstance(exc, ShadowBootError) or "did not reach its agent" not in str(exc):
        return str(exc).split("; console:", 1)[0][:400]
    lines = [ln.strip() for ln in console.splitlines() if ln.strip()]
    late = f"its agent did not answer within {elapsed_s:.0f} s"
    if not lines:
        return f"{late}, and it wrote nothing on its console: no bootable x86_64 OS?"
    if _CLOUD_INIT not in console:
        return f"{late}, and its console shows no cloud-init, which starts the agent"
    return f"{late}; its console ends: {lines[-1][-200:]}"


__all__ = [
    "IDLE_PHASE_S",
    "TargetImage",
    "TargetOsImage",
    "console_reason",
    "fallback_reason",
    "measure_idle",
    "shadow_image",
    "target_spec",
]
