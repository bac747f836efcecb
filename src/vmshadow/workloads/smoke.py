"""The ``smoke`` profile: a short fixed workload that exercises every measurement.

One phase per resource, each long enough for a few samples under TCG: a CPU
phase (one stress-ng cpu worker, flat out), a memory phase (stress-ng vm
keeping 256 MiB resident, so guest memory used must rise) and a random 4k
I/O phase (fio randrw with direct I/O on the scratch disk).
"""

from __future__ import annotations

from vmshadow.agent.protocol import PhaseSpec

SMOKE_PHASE_S = 8


def smoke_phases(duration_s: int = SMOKE_PHASE_S) -> list[PhaseSpec]:
    return [
        PhaseSpec.from_dict(
            {
                "phase_id": "cpu",
                "kind": "stress-ng",
                "duration_s": duration_s,
                "params": {"stressor": "cpu", "workers": 1},
            }
        ),
        PhaseSpec.from_dict(
            {
                "phase_id": "memory",
                "kind": "stress-ng",
                "duration_s": duration_s,
                "params": {"stressor": "vm", "workers": 1, "vm_bytes_mib": 256, "vm_keep": True},
            }
        ),
        PhaseSpec.from_dict(
            {
                "phase_id": "io",
                "kind": "fio",
                "duration_s": duration_s,
                "params": {
                    "rw": "randrw",
                    "bs_kib": 4,
                    "iodepth": 16,
                    "size_mib": 256,
                    "direct": True,
                    "ioengine": "libaio",
                },
            }
        ),
    ]


PROFILES = {"smoke": smoke_phases}
