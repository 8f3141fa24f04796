"""Keys pressed faster than screens mount: enter and escape in the command log.

A terminal delivers keys as fast as they are typed or pasted (about 50 a second held
down); the console must take them in any order and speed. Here they are sent to the
app's driver back to back, without waiting for the app to be idle between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual import events

from tests.tui.conftest import main_screen, running, settle
from tui.app import MiglabApp
from tui.replay import ReplayBackend
from tui.screens.main import MainScreen
from tui.screens.output import CommandOutputScreen
from tui.widgets.command_log import CommandLog

PRESSES = 300

Replay = Callable[..., ReplayBackend]


async def send_keys_fast(app: MiglabApp, keys: list[str]) -> None:
    """Each key as the terminal would send it, yielding to the loop only in between."""
    driver = app._driver
    assert driver is not None
    for key in keys:
        event = events.Key(key, "\r" if key == "enter" else "\x1b")
        event.set_sender(app)
        driver.send_message(event)
        await asyncio.sleep(0)


async def screens_settled(app: MiglabApp) -> None:
    """Wait (bounded by the test timeout) until no screen change is pending."""
    for _ in range(500):
        if app._exception is not None or not app.is_running or not app.screen_stack:
            return  # crashed: the asserts say how
        if app.screen.is_mounted:
            return
        await asyncio.sleep(0.01)


async def test_enter_and_escape_pressed_fast_in_the_command_log_do_not_crash(
    replay: Replay,
) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        log = main_screen(app).query_one(CommandLog)
        log.table.focus()
        log.table.move_cursor(row=4)
        keys = ["enter", "escape"] * (PRESSES // 2)
        await send_keys_fast(app, keys)
        print("SENT", flush=True)
        await screens_settled(app)
        print("SETTLED", app.screen_stack, flush=True)
        await pilot.pause()
        assert app._exception is None, repr(app._exception)
        assert app.is_running
        # Every output screen opened was closed again, or one is still up, on the log.
        assert isinstance(app.screen, MainScreen | CommandOutputScreen)
        assert sum(isinstance(s, CommandOutputScreen) for s in app.screen_stack) <= 1
        if isinstance(app.screen, CommandOutputScreen):
            await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        # The console still answers: enter opens the output once more.
        log.table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, CommandOutputScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
