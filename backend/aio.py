"""``wait_for`` that never loses a cancellation.

Before Python 3.12, :func:`asyncio.wait_for` returns the awaited result instead of
raising CancelledError when its task is cancelled just as the awaited thing completes
(CPython gh-86296). The cancel is then lost: a run told to stop (Ctrl-C, a full disk, a
lost host) goes on as if nothing happened. :func:`asyncio.timeout` (3.11) has no such
flaw, and it is what 3.12's ``wait_for`` is built on; every bounded wait in miglab goes
through this function.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await ``awaitable``; raise TimeoutError after ``timeout`` seconds (None: no limit)."""
    if sys.version_info < (3, 11):  # no asyncio.timeout there; 3.10 keeps the old race
        return await asyncio.wait_for(awaitable, timeout)
    async with asyncio.timeout(timeout):
        return await awaitable
