"""Commands run inside ``polling()`` are marked as polls in their command.started."""

from __future__ import annotations

import asyncio

from backend.events import CommandStarted, Event
from backend.transport.base import polling
from backend.transport.local import LocalRunner


async def test_polls_are_marked_and_actions_are_not() -> None:
    events: list[Event] = []
    runner = LocalRunner("console", events.append)
    try:
        await runner.run(["true"])
        with polling():
            await runner.run(["echo", "look"])
            await asyncio.create_task(runner.run(["echo", "a task started while polling"]))
        await runner.run(["false"])
    finally:
        await runner.close()
    started = [(e.argv[-1], e.poll) for e in events if isinstance(e, CommandStarted)]
    assert started == [
        ("true", False),
        ("look", True),
        ("a task started while polling", True),
        ("false", False),
    ]
