"""A profile that needs more memory than the shadow has is refused before any shadow
boots, naming the profile and the reason (a phase that still runs the guest out of
memory is failed by the agent: see test_an_oom_kill_during_a_phase_fails_it and the
real guest in tests/e2e/test_faults_e2e.py)."""

from __future__ import annotations

import pytest

from vmshadow.domain.errors import ConfigError
from vmshadow.workloads.catalog import ramp_plan
from vmshadow.workloads.profiles import parse_profile

pytestmark = pytest.mark.fault

HUNGRY = """\
name: hungry
unit: jobs/s
per_unit: {cpu_percent: 1, memory_mib: 8, iops: 1}
base_memory_mib: 600
ramp: [1, 2]
"""


def test_a_profile_bigger_than_the_shadow_is_refused_with_the_reason() -> None:
    p = parse_profile(HUNGRY, "hungry.yaml")
    with pytest.raises(ConfigError) as info:
        ramp_plan(p, duration_s=5, shadow_memory_mib=512)
    assert info.value.field == "profile"
    assert "hungry: even its first ramp load needs more memory than a 512 MiB shadow" in str(
        info.value
    )


def test_the_ramp_stops_before_the_step_that_would_not_fit() -> None:
    p = parse_profile(HUNGRY.replace("base_memory_mib: 600", "base_memory_mib: 350"), "h.yaml")
    steps = ramp_plan(p, duration_s=5, shadow_memory_mib=512).phases  # no load: the whole ramp
    assert len(steps) == 1  # 358 MiB fits in 70 % of 512 MiB, 366 does not
