"""Shadows restored from a template, on real QEMU: as good as booted, and safe to fail.

The templates live in a folder of this module's own under the default data
folder (QEMU must reach the frozen overlay), so the service's own templates
are neither used nor pruned here.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import shadow_domains
from service_helpers import cached_accelerator

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.config import Settings
from vmshadow.domain.samples import Source
from vmshadow.hypervisor.filemodes import private_dir, qemu_gid, qemu_readable
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.hypervisor.savefile import HEADER_SIZE, parse_region, read_region, rewrite_region
from vmshadow.image.builder import find_image
from vmshadow.image.files import ImageFiles
from vmshadow.shadow.session import ShadowSession, session_options
from vmshadow.shadow.templates import OVERLAY_FILE, STATE_FILE, TemplateStore

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt]

PHASE = {
    "phase_id": "cpu",
    "kind": "stress-ng",
    "duration_s": 5,
    "params": {"stressor": "cpu", "workers": 1},
}


def _image(settings: Settings) -> ImageFiles:
    image = find_image(settings.images_dir)
    assert image is not None
    return image


def _session(
    settings: Settings, hv: LibvirtHypervisor, store: TemplateStore | None
) -> ShadowSession:
    opts = {**session_options(settings), "templates": store}
    return ShadowSession(
        hv,
        _image(settings),
        settings.runs_dir,
        accelerator=cached_accelerator(settings, hv),
        **opts,  # type: ignore[arg-type]
    )


def _template_dirs(store: TemplateStore) -> list[Path]:
    return [p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")]


@pytest.fixture(scope="module")
def built(settings: Settings) -> Iterator[tuple[TemplateStore, dict[str, object]]]:
    """A template saved by a first shadow of the built-in image, and what that shadow said."""
    root = settings.data_dir / "e2e" / f"templates-{uuid.uuid4().hex[:8]}"
    store = TemplateStore(root)
    try:
        with LibvirtHypervisor(settings.libvirt_uri) as hv, _session(settings, hv, store) as first:
            said = {"boot": first.record.boot, "reason": first.record.boot_reason}
            said["name"] = first.name
            said["run"] = _phase_figures(first)
        yield store, said
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _phase_figures(session: ShadowSession) -> dict[str, float]:
    run = session.run_phase(PhaseSpec.from_dict(PHASE))
    points = [p for p in session.record.series if p.phase_id == "cpu"]
    host = [p.busy_vcpus for p in points if p.source is Source.HOST]
    guest = [p for p in points if p.source is Source.GUEST]
    # Guest samples land on the session's clock inside their phase: the offset
    # from the agent's clock (the pong after a restore) is right.
    for p in guest:
        assert run.started_s - 0.5 <= p.t <= run.ended_s + 1.5, (p.t, run)
    return {
        "host_busy": statistics.mean(host),
        "guest_busy": statistics.mean(p.busy_vcpus for p in guest),
        "guest_samples": len(guest),
    }


def test_first_shadow_saves_the_template_in_place(
    settings: Settings, built: tuple[TemplateStore, dict[str, object]]
) -> None:
    store, said = built
    assert said["boot"] == "cold"
    assert "saved one from this boot" in str(said["reason"])
    (folder,) = _template_dirs(store)
    state, overlay = folder / STATE_FILE, folder / OVERLAY_FILE
    # Same modes as images: the frozen overlay root's and read by QEMU's group only,
    # the guest's memory readable by libvirtd (root) alone.
    assert state.stat().st_mode & 0o777 == 0o600
    assert overlay.stat().st_mode & 0o777 == 0o440 and overlay.stat().st_uid == 0
    if qemu_gid() is not None:
        assert overlay.stat().st_gid == qemu_gid()
        assert folder.stat().st_mode & 0o777 == 0o750
    # A real save file, as libvirt wrote it: the header names the first shadow,
    # carries a cookie, and its XML can be replaced within the region.
    region = read_region(state)
    header = parse_region(region)
    assert f"<name>{said['name']}</name>" in header.xml
    assert header.version == 2 and b"<cookie>" in header.cookie
    longer = header.xml.replace(str(said["name"]), "vmshadow-shadow-" + "x" * 40)
    again = parse_region(rewrite_region(region, longer))
    assert again.xml == longer and again.cookie == header.cookie
    assert len(region) == HEADER_SIZE + header.data_len
    assert not list(store.root.glob(".build-*"))


def test_restored_shadows_two_at_once_measure_like_a_cold_one(
    settings: Settings, hv: LibvirtHypervisor, built: tuple[TemplateStore, dict[str, object]]
) -> None:
    store, _ = built
    state = next(iter(_template_dirs(store))) / STATE_FILE
    pristine = read_region(state)
    results: dict[int, dict[str, object]] = {}
    errors: list[BaseException] = []

    def restored(i: int) -> None:
        try:
            with (
                LibvirtHypervisor(settings.libvirt_uri) as own,
                _session(settings, own, store) as s,
            ):
                results[i] = {
                    "boot": s.record.boot,
                    "reason": s.record.boot_reason,
                    "ready": s.record.timings.agent_ready_s,
                    "name": s.name,
                    "run_dir": s.run_dir,
                    "figures": _phase_figures(s),
                }
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=restored, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [results[i]["boot"] for i in range(2)] == ["restored", "restored"], results
    assert results[0]["name"] != results[1]["name"]
    # Generous: TCG on a shared two-core host, both restoring at once.
    assert all(float(results[i]["ready"]) < 10 for i in range(2)), results  # type: ignore[arg-type]
    # The template's file is back as it was saved: the next restore finds it intact.
    assert read_region(state) == pristine

    # The same phase in a restored and in a cold shadow, at the same time: on a
    # shared host, the contention both see is then the same.
    figures: dict[str, dict[str, float]] = {}
    both_up = threading.Barrier(2, timeout=180)

    def side(kind: str, with_store: TemplateStore | None) -> None:
        try:
            with (
                LibvirtHypervisor(settings.libvirt_uri) as own,
                _session(settings, own, with_store) as s,
            ):
                figures[kind + "_boot"] = {s.record.boot: 1.0}
                names.append(s.name)
                both_up.wait()
                figures[kind] = _phase_figures(s)
        except BaseException as exc:
            errors.append(exc)
            both_up.abort()

    names: list[str] = []
    pair = [
        threading.Thread(target=side, args=("warm", store)),
        threading.Thread(target=side, args=("cold", None)),
    ]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    assert not errors, errors
    assert figures["warm_boot"] == {"restored": 1.0} and figures["cold_boot"] == {"cold": 1.0}
    warm, cold = figures["warm"], figures["cold"]
    # One busy vCPU either way; within noise (generous: TCG on a shared host).
    for key in ("host_busy", "guest_busy"):
        assert abs(warm[key] - cold[key]) < 0.3, (warm, cold)
    # The guest's own view: stress-ng keeps its one vCPU busy, however loaded the host.
    assert warm["guest_busy"] > 0.7 and cold["guest_busy"] > 0.7
    assert warm["guest_samples"] >= 3
    # Other tests may run shadows of their own meanwhile: look for ours only.
    left = shadow_domains(hv)
    assert not left & {*names, *(str(r["name"]) for r in results.values())}
    for r in results.values():
        assert not Path(str(r["run_dir"])).exists()


def _copy_template(store: TemplateStore, root: Path) -> Path:
    """A copy of ``store``'s template under ``root``, modes and owners as saved."""
    (src,) = _template_dirs(store)
    shutil.copytree(src, root / src.name)
    private_dir(root)
    private_dir(root / src.name)
    qemu_readable(root / src.name / OVERLAY_FILE)
    return root / src.name


def test_a_corrupt_template_falls_back_to_a_cold_boot_and_leaves_nothing(
    settings: Settings, hv: LibvirtHypervisor, built: tuple[TemplateStore, dict[str, object]]
) -> None:
    store, _ = built
    root = settings.data_dir / "e2e" / f"templates-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    try:
        folder = _copy_template(store, root)
        state = folder / STATE_FILE
        region = read_region(state)
        # QEMU's migration stream right after libvirt's header: garbage, same size.
        with state.open("r+b") as f:
            f.seek(len(region))
            f.write(os.urandom(4096))
        session = _session(settings, hv, TemplateStore(root))
        with session:
            assert session.record.boot == "cold"
            reason = session.record.boot_reason
            assert "restoring template" in reason and "failed" in reason, reason
            assert _phase_figures(session)["guest_busy"] > 0.7
        # Neither the failed restore nor the cold boot after it left anything.
        assert session.name not in shadow_domains(hv)
        assert not session.run_dir.exists()
        # The damaged template was discarded; this cold boot saved a good one in its place.
        assert not list(root.glob(".build-*"))
        with _session(settings, hv, TemplateStore(root)) as again:
            assert again.record.boot == "restored", again.record.boot_reason
    finally:
        shutil.rmtree(root, ignore_errors=True)
