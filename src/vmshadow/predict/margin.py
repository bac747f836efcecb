"""The safety margin over the P90: fixed (x1.2 by default, as in the original idea)
or calibrated. A history model's calibrated margin is conformal
(:mod:`vmshadow.predict.conformal`); :func:`calibrate_margin`, the smallest
grid margin meeting a rate on given cases, serves the hindsight reference of
:mod:`vmshadow.predict.noise`, which chooses its margin on the scored cases
by design.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vmshadow.predict.sar import Floats

MarginMode = Literal["fixed", "calibrated"]
MARGIN_MODES: tuple[MarginMode, ...] = ("fixed", "calibrated")
DEFAULT_MARGIN = 1.2
DEFAULT_TARGET_UNDER = 0.05
# Never below 1: the margin is a cushion over the P90, not a discount on it.
MARGIN_GRID = np.round(np.arange(1.0, 4.0 + 1e-9, 0.01), 2)


def calibrate_margin(
    p90: Floats, req: Floats, capacity: Floats, target_under: float = DEFAULT_TARGET_UNDER
) -> tuple[float, bool]:
    """(margin, reached): the smallest margin on the grid with under-provisioning
    at most ``target_under``; (the largest, False) when none reaches it.

    ``capacity`` caps each recommendation (a VM cannot use more than it has; use
    ``inf`` where nothing caps), so a margin that only adds above it counts as
    no help.
    """
    if not 0 <= target_under < 1:
        raise ValueError(f"target_under must be in [0, 1), got {target_under}")
    for m in MARGIN_GRID:
        if float(np.mean(req > np.minimum(p90 * m, capacity))) <= target_under:
            return float(m), True
    return float(MARGIN_GRID[-1]), False
