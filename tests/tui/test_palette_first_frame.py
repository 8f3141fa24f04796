"""ctrl+p shows the palette's search line at once; the commands follow when gathered.

Textual's palette showed nothing but the dimmed screen until every provider had
given every command. Here the commands are held back (a provider that waits) to
see what shows before them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from textual.command import CommandInput, CommandList, CommandPalette, Hits

from tests.support.waiting import until
from tests.tui.conftest import running, settle
from tui import keys
from tui.replay import ReplayBackend
from tui.screens.palette import KeysProvider

Replay = Callable[..., ReplayBackend]


async def test_the_search_line_shows_before_the_commands_are_gathered(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    gathered = asyncio.Event()
    real_discover = KeysProvider.discover

    async def slow_discover(self: KeysProvider) -> Hits:
        await gathered.wait()
        async for hit in real_discover(self):
            yield hit

    monkeypatch.setattr(KeysProvider, "discover", slow_discover)
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        await pilot.press("ctrl+p")
        await until(lambda: isinstance(app.screen, CommandPalette) and app.screen.is_mounted)
        palette = app.screen
        await pilot.pause()
        search = palette.query_one(CommandInput)
        assert search.display and search.region.height > 0  # on screen, commands or not
        assert app.focused is search
        listed = palette.query_one(CommandList)
        assert listed.option_count == 0
        gathered.set()
        shown = [key for key in keys.KEYS if key.binding and key.action != "app.command_palette"]
        await until(lambda: listed.option_count == len(shown))
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, CommandPalette))
