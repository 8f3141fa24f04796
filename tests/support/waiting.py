"""Waiting for a state, not for time.

The suite runs on a shared 2-core machine that is often loaded: a wait with a deadline
of a few seconds, or a fixed pause before an assertion, passes on a quiet machine and
fails on a busy one. :func:`until` has no deadline of its own: a state that never comes
is a hang, which the test's pytest timeout reports, with the waiting line of the test in
its traceback.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

POLL_S = 0.02


async def until(condition: Callable[[], object], poll_s: float = POLL_S) -> None:
    """Return once ``condition()`` is true, however long this machine takes."""
    while not condition():
        await asyncio.sleep(poll_s)


NO_DEADLINE = math.inf
"""For a library wait that takes a timeout (a guest's console line): none of the test's
own; the test's pytest timeout is the hang guard."""
