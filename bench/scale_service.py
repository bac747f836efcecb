"""The service side of the scale bench (``scale.py``): the product's supervisor
over API workers and a controller whose shadows are ``ReplayShadow``.

What the test driver cannot run is the shadow itself (it has no guests, so no
agent): the controller's ``ShadowSession`` is replaced, in the controller
process only, by ``ReplayShadow``, which starts and destroys the transient
shadow domain on the test driver like the real session and replays host and
guest samples with the figures of a real smoke run (README) at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import bench_settings, default_settings
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.shadow.profiling import PhaseRun
from vmshadow.shadow.session import ShadowSession

API_WORKERS = 2  # the default of api.workers
HOST_CPUS, HOST_MEMORY_MIB = 4096, 2**20  # room for 1,000 launched VMs of 2 vCPU, 512 MiB

# Host view of a real smoke run on the README's machine: busy vCPUs, MiB, IOPS.
SMOKE_FIGURES = {"cpu": (1.0, 38.0, 2.0), "memory": (1.0, 292.0, 1.0), "io": (0.9, 41.0, 4752.0)}


class ReplayShadow(ShadowSession):
    """A shadow for a driver without guests: the domain is real, the samples replayed."""

    def _boot(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=False)
        self.record.timings.prepared_s = self._elapsed()
        self._hv.start_shadow(self.spec, scratch_cache=self._scratch_cache)
        self.record.timings.boot_s = self._elapsed()
        self.record.timings.agent_ready_s = self._elapsed()

    def run_phase(
        self,
        spec: PhaseSpec,
        *,
        deadline: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> PhaseRun:
        started = self._elapsed()
        busy, mem, iops = SMOKE_FIGURES.get(spec.phase_id, (0.5, 100.0, 100.0))
        for n in range(spec.duration_s):
            for source in (Source.HOST, Source.GUEST):
                self._add_point(
                    UsagePoint(
                        t=started + n + 1,
                        source=source,
                        phase_id=spec.phase_id,
                        busy_vcpus=busy,
                        mem_used_mib=mem,
                        read_iops=iops / 2,
                        write_iops=iops / 2,
                        read_bps=iops * 2048,
                        write_bps=iops * 2048,
                    )
                )
        run = PhaseRun(spec=spec, started_s=started, ended_s=self._elapsed(), result={})
        self.record.phases.append(run)
        return run


def level_settings(data_dir: Path, port: int, database_url: str | None) -> Any:
    # A test-driver host big enough for the largest level's VMs (test:///default
    # has 3 GiB: six launched VMs fill it, and the rest would wait for room).
    host_xml = data_dir / "host.xml"
    host_xml.write_text(
        "<node><cpu><mhz>2000</mhz><model>bench</model><nodes>1</nodes><sockets>1</sockets>"
        f"<cores>{HOST_CPUS}</cores><threads>1</threads></cpu>"
        f"<memory>{HOST_MEMORY_MIB * 1024}</memory></node>\n"
    )
    return bench_settings(
        data_dir,
        default_settings(),
        libvirt_uri=f"test://{host_xml}",
        accelerator="tcg",
        database_url=database_url,
        controller__observe_s=1,
        controller__refine_rounds=0,
        controller__phase_s=2,
        quotas__max_active_transitions=100_000,
        api__port=port,
        api__max_streams=10_000,  # the SSE variant holds one stream per client
        api__workers=API_WORKERS,
    )


def serve(data_dir: Path, port: int, database_url: str | None, *, script: str) -> None:
    """The service of one level (run by the parent with ``--serve``): the product's
    supervisor, whose children are this script's ``--child`` so that the
    controller's shadows are ``ReplayShadow``. Each process opens its own
    test:///<file> host (a test-driver host lives in the connection that
    opened it): the controller's holds the VMs, the API's only answers sizes."""
    from vmshadow.ops import logs
    from vmshadow.ops.supervisor import Supervisor
    from vmshadow.store.db import make_engine, migrate

    settings = level_settings(data_dir, port, database_url)
    logs.configure(settings.log)
    migrate(make_engine(settings.db_url))

    def command(role: str, extra: list[str]) -> list[str]:
        return [sys.executable, script, "--child", role, *extra]

    Supervisor(settings, "all", command=command).run()


def child(argv: list[str]) -> None:
    from vmshadow.ops import roles

    roles.main(argv, shadow_session=ReplayShadow)


def ceiling_app() -> Any:
    """The floor under every API figure (``scale.py``'s ceiling rows): FastAPI
    under the same uvicorn as the API, answering the poll with a fixed
    transition-sized document, no database, no controller. The product's
    latency at N clients cannot be lower than this one's on the same host."""
    from fastapi import FastAPI

    app = FastAPI()
    doc = {"id": "0" * 12, "state": "profiling", "terminal": False, "reason": None}
    doc.update({f"field_{i}": None for i in range(24)})  # about a transition view's size

    @app.get("/api/v1/transitions/{tid}")
    def get(tid: str) -> dict[str, Any]:
        return {**doc, "id": tid}

    return app
