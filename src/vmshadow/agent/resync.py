"""What the agent does when the host says ``resync``: the shadow was restored
from a saved template, so its clock and random state are the template's."""

from __future__ import annotations

import contextlib
import os
import random
import time


def resync(
    epoch_s: float, entropy: bytes, *, set_clock: bool, urandom: str = "/dev/urandom"
) -> None:
    """After a restore from a saved state: the clock and the random pool the
    guest had when the template was saved are stale, and every shadow restored
    from it would share them.

    Writing to /dev/urandom mixes the bytes into the kernel's pool (without
    crediting entropy), so clones diverge; Python's own generator is reseeded
    from the mixed pool. The clock is set only in a guest (``set_clock``: the
    agent speaks on a virtio port), never by an agent run on a host over stdio.
    """
    with contextlib.suppress(OSError), open(urandom, "wb") as f:
        f.write(entropy)
    random.seed(os.urandom(32))
    if set_clock:
        with contextlib.suppress(OSError):
            time.clock_settime(time.CLOCK_REALTIME, epoch_s)
