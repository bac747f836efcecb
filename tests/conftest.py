"""Test hygiene shared by every test.

Unit tests may not open a libvirt connection or start a subprocess unless
they say so with a marker (``libvirt``, ``subprocess`` or ``e2e``), in the
manner of cloud-init's ``disable_subp_usage``: a unit test that quietly
depends on the machine is a flaky test waiting to happen.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import libvirt
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from vmshadow.config import Settings
from vmshadow.server import Service, build

_ALLOW = {"libvirt", "subprocess", "e2e"}


@pytest.fixture(autouse=True)
def _guard_real_resources(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    marks = {m.name for m in request.node.iter_markers()}
    if not marks & _ALLOW and "unit" in request.node.path.parts:

        def refuse_subprocess(*_a: object, **_k: object) -> None:
            raise AssertionError("unit test started a subprocess: mark it @pytest.mark.subprocess")

        def refuse_libvirt(*_a: object, **_k: object) -> None:
            raise AssertionError(
                "unit test opened a libvirt connection: mark it @pytest.mark.libvirt"
            )

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse_subprocess)
        monkeypatch.setattr(libvirt, "open", refuse_libvirt)
    yield


# The machines that run these tests are shared and noisy (two cores, heavy
# steal): hypothesis's 200 ms per-example deadline turned load into failures
# ("Unreliable test timings"). Speed is the benches' business, not the tests'.
hypothesis_settings.register_profile("vmshadow", deadline=None)
hypothesis_settings.load_profile("vmshadow")


# The service without its controller, for the tests of its API and pages. A
# module gives the ``settings`` (usually on libvirt's test driver) and may
# override either fixture.
@pytest.fixture
def svc(settings: Settings) -> Service:
    return build(settings, with_controller=False)


@pytest.fixture
def client(svc: Service) -> Iterator[TestClient]:
    # A loopback name: the app answers only the names it is bound to (against
    # DNS rebinding), never TestClient's default "testserver".
    with TestClient(svc.app, base_url="http://127.0.0.1") as c:
        yield c
