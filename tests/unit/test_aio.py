"""backend.aio.wait_for: a cancel that arrives as the awaited thing completes is not lost."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from backend.aio import wait_for

ROOT = Path(__file__).resolve().parents[2]


async def _cancelled_as_it_completes(waiter: object) -> asyncio.Task[object]:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(waiter(future, 10))  # type: ignore[operator]
    await asyncio.sleep(0)  # the task now waits on the future
    future.set_result("done")  # completes ...
    task.cancel()  # ... and the caller is cancelled in the same turn of the loop
    await asyncio.wait({task})
    return task


async def test_a_cancel_as_the_wait_completes_is_not_lost() -> None:
    task = await _cancelled_as_it_completes(wait_for)
    assert task.cancelled()


async def test_the_race_it_exists_for_is_real_here() -> None:
    """Python 3.11's own wait_for loses that cancel (what made a run go on past a full
    disk); if a newer Python fixed it, backend.aio can become a plain alias."""
    task = await _cancelled_as_it_completes(asyncio.wait_for)
    if sys.version_info >= (3, 12):
        assert task.cancelled()
    else:
        assert not task.cancelled() and task.result() == "done"


async def test_a_timeout_raises_timeout_error_and_a_result_comes_back() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.Event().wait(), 0.01)
    assert await wait_for(asyncio.sleep(0, "x"), None) == "x"


def test_no_module_waits_with_asyncio_wait_for() -> None:
    """Every bounded wait goes through backend.aio (one place that knows the race)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for top in ("backend", "tui")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path.name != "aio.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\basyncio\.wait_for\(", line)
    ]
    assert offenders == []
