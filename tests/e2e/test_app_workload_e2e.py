"""The application itself as the workload, in a real shadow (QEMU, TCG).

A shadow of the test cloud image (Debian 12 with python3; `vmshadow image
build --test-cloud`) runs the documented app profile
(``docs/examples/profile-app-pyhttp.yaml``: a loopback ``http.server`` and a
Python client at each step's rate) through the session and profiling code
the controller uses, then the ramp fits what the shadow measured against the
rates the application achieved. A program the image lacks fails its step
with the agent's own words. Nothing is left behind: no domain, no run
folder, no store image.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import shadow_domains

from vmshadow.agent.appspec import AppParams
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.config import Settings, load_settings
from vmshadow.domain.errors import AgentError
from vmshadow.domain.ramp import app_run
from vmshadow.domain.samples import Source
from vmshadow.hypervisor.filemodes import private_dir
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image, list_images
from vmshadow.image.files import ImageFiles
from vmshadow.predict.ramp import RampPredictor
from vmshadow.workloads.catalog import ramp_plan
from vmshadow.workloads.profiles import load_profile

targetos = pytest.importorskip(
    "vmshadow.shadow.targetos", reason="target-OS shadows (shadow/targetos.py) are not there yet"
)

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "profile-app-pyhttp.yaml"
PHASE_S = 6  # short steps: the whole test stays near two minutes under TCG
TARGET_LOAD = 50.0


@pytest.fixture(scope="module")
def app_settings() -> Settings:
    return load_settings(config_path=Path("/nonexistent"), environ={})


def fallback_image(settings: Settings) -> ImageFiles:
    """The built-in image a target-OS shadow keeps as its fallback.

    A target-OS shadow's agent comes from the tools disk, built from today's
    sources; the built-in image only stands in if the target cannot boot,
    and this test requires that it does not. So a built-in image of older
    agent sources will do when today's is not built (building it fetches the
    kernel package from the network).
    """
    current = find_image(settings.images_dir)
    if current is not None:
        return current
    older = [i for i in list_images(settings.images_dir) if i.complete()]
    if not older:
        pytest.skip(f"no built-in shadow image in {settings.images_dir}: run ./scripts/setup")
    return max(older, key=lambda i: i.directory.stat().st_mtime)


def cloud_image_path() -> Path:
    from vmshadow.image.testcloud import build_test_cloud_image

    settings = load_settings(config_path=Path("/nonexistent"), environ={})
    return Path(build_test_cloud_image(settings.data_dir).path)


@pytest.fixture
def store_name(app_settings: Settings) -> Iterator[str]:
    """The test cloud image in the image store under a name of this test's own."""
    name = f"e2e-app-{uuid.uuid4().hex[:8]}"
    store = app_settings.user_images_dir
    if not store.is_dir():
        store.mkdir(parents=True)
        private_dir(store)
    try:
        yield name
    finally:
        (store / name).unlink(missing_ok=True)
        assert not (store / name).exists()


def _chain(settings: Settings, name: str) -> tuple[tuple[Path, str], ...]:
    from vmshadow.controller.context import user_image

    found = user_image(settings, name)
    return ((found.path, found.format), *found.backing)


def test_the_application_runs_at_each_step_and_the_ramp_uses_what_it_achieved(
    app_settings: Settings, store_name: str
) -> None:
    from vmshadow.shadow.accelerator import accelerator_for
    from vmshadow.shadow.profiling import run_profile
    from vmshadow.shadow.session import ShadowSession, session_options

    settings = app_settings
    shutil.copyfile(cloud_image_path(), settings.user_images_dir / store_name)
    profile = load_profile(str(EXAMPLE))
    steps = ramp_plan(
        profile,
        duration_s=PHASE_S,
        shadow_memory_mib=settings.shadow.memory_mib,
        image=store_name,
    ).phases  # no load given: every step of the application's ramp
    builtin = fallback_image(settings)
    image = targetos.shadow_image(
        builtin, store_name, lambda n: _chain(settings, n), settings.data_dir
    )
    assert image.target is not None, image.unusable
    started = time.monotonic()
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        before = shadow_domains(hv)
        accelerator = accelerator_for(hv, builtin, settings).accelerator
        with ShadowSession(
            hv, image, settings.runs_dir, accelerator=accelerator, **session_options(settings)
        ) as session:
            record = session.record
            run_dir, name = session.run_dir, session.name
            ready_s = record.timings.agent_ready_s
            assert record.shadow_os is not None and record.shadow_os.used == "target"
            profile_started = time.monotonic()
            runs = run_profile(session, steps, record.series, shadow_vcpus=settings.shadow.vcpus)
            profile_s = time.monotonic() - profile_started
            # A program the image does not have: the step fails, saying so.
            missing = PhaseSpec(
                "s9-app",
                "app",
                2,
                AppParams(command=("pgbench", "--rate={rate}"), achieved=r"tps = (\S+)", rate=1.0),
            )
            with pytest.raises(AgentError) as caught:
                session.run_phase(missing)
        total_s = time.monotonic() - started
        assert shadow_domains(hv) == before
        assert name not in {n for n, _ in hv.list_shadows()}
    assert not run_dir.exists()
    assert "tool_missing" in str(caught.value) and "pgbench is not installed" in str(caught.value)

    results = [r.result for r in runs]
    for result in results:
        metrics = result["metrics"]
        assert result["kind"] == "app" and result["exit_code"] == 0, result
        assert metrics["user"] == "nobody" and "Debian" in str(metrics["os"]), metrics
        assert metrics["server"] == "python3 -m http.server 8080 --bind 127.0.0.1"
        assert isinstance(metrics["ready_s"], float)
    app = app_run(results)
    assert app is not None and sorted(app.achieved) == list(range(len(runs)))
    assert app.achieved[0] == pytest.approx(profile.ramp[0], rel=0.25)

    points = [p for p in record.series if p.phase_id is not None and p.phase_id.endswith("-app")]
    predictor = RampPredictor(
        lambda _name: (list(profile.ramp), profile.per_unit.iops),
        settings.shadow.vcpus,
        settings.controller.margin,
    )
    prediction = predictor.predict(points, profile=profile.name, load=TARGET_LOAD, app=app)
    detail = prediction.detail
    assert detail["app"] == app.as_dict()
    ramp = detail["ramp"]
    assert isinstance(ramp, list)
    for step in ramp:
        assert step["load"] == pytest.approx(app.achieved[step["step"]])
        assert step["asked_load"] == profile.ramp[step["step"]]
    assert prediction.need.vcpus > 0
    # The OS with the server running needs more than the OS between phases
    # (the agent's unphased samples); a fixed 40 MiB read 37 once in CI.
    between = [
        p.mem_used_mib
        for p in record.series
        if p.source is Source.GUEST and p.phase_id is None and p.mem_used_mib
    ]
    assert between and prediction.need.memory_mib > min(between), (between, prediction.need)
    print(
        f"\napp profile {profile.name} in a target-OS shadow ({accelerator.value}): agent ready "
        f"{ready_s:.1f} s, {len(runs)} steps in {profile_s:.1f} s, whole test {total_s:.1f} s\n"
        + "\n".join(
            f"  step {s['step']}: asked {s['asked_load']:g}, achieved {s['load']:.2f} "
            f"(short: {s['load_short']}), measured {s['measured']}"
            for s in ramp
        )
        + f"\n  need at {TARGET_LOAD:g} requests/s: {prediction.need.as_dict()}; "
        f"cost per unit {detail['cost_per_unit']}; recommended {prediction.recommended.as_dict()}"
    )
