"""A dialog's widgets are styled once, as they mount: not again when it first shows.

Textual's ``push_screen`` asks the new screen to restyle every widget it has just
styled while mounting them (tui/screens/styled_once.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from textual import events
from textual.command import CommandPalette, DiscoveryHit, Hits
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen

from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end
from tui.replay import ReplayBackend
from tui.screens.help import HelpScreen
from tui.screens.output import CommandOutputScreen
from tui.screens.palette import KeysProvider
from tui.screens.pickers import OpenLog
from tui.widgets.command_log import CommandLog

Replay = Callable[..., ReplayBackend]


@pytest.mark.parametrize(
    ("key", "dialog"),
    [("ctrl+p", CommandPalette), ("enter", CommandOutputScreen), ("o", OpenLog)],
)
async def test_opening_a_dialog_styles_each_of_its_widgets_once(
    replay: Replay, key: str, dialog: type[ModalScreen[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The palette's commands held back: the list showing restyles its search line.
    gathered = asyncio.Event()

    async def no_commands_yet(self: KeysProvider) -> Hits:
        await gathered.wait()
        yield DiscoveryHit("never", lambda: None)

    monkeypatch.setattr(KeysProvider, "discover", no_commands_yet)
    # Nor does the palette show itself busy, as it does 0.5 s into a search (a restyle of
    # its list): on a loaded machine the checks below came later than that.
    monkeypatch.setattr(CommandPalette, "_BUSY_COUNTDOWN", 3600.0)
    async with console_at_its_end(replay(), size=(160, 48)) as (app, pilot, console):
        if key == "enter":
            console.query_one(CommandLog).table.focus()
        styled: Counter[int] = Counter()
        real_apply = app.stylesheet.apply

        def apply(node: DOMNode, *args: object, **kwargs: object) -> None:
            styled[id(node)] += 1
            real_apply(node, *args, **kwargs)  # type: ignore[arg-type]

        app.stylesheet.apply = apply  # type: ignore[method-assign]
        await pilot.press(key)
        await until(lambda: isinstance(app.screen, dialog) and app.screen.is_mounted)
        await pilot.pause()
        screen = app.screen
        focused = app.focused  # styled again as it takes the focus (:focus rules)
        assert list(screen.walk_children())
        for node in screen.walk_children():
            if node is not focused:
                assert styled[id(node)] == 1, node
        app.stylesheet.apply = real_apply  # type: ignore[method-assign]
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, ModalScreen))


async def test_showing_a_dialog_again_restyles_it_once(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Help is kept installed: its later showings restyle it (the theme may have changed),
    # once each, and Textual's resume handler runs once per showing.
    resumed: list[bool] = []
    real_resume = Screen._on_screen_resume

    def resume(self: Screen[object], event: events.ScreenResume) -> None:
        if isinstance(self, HelpScreen):
            resumed.append(event.refresh_styles)
        real_resume(self, event)

    monkeypatch.setattr(Screen, "_on_screen_resume", resume)
    async with console_at_its_end(replay(), size=(160, 48)) as (app, pilot, _screen):
        for _ in range(2):
            await pilot.press("question_mark")
            await until(lambda: isinstance(app.screen, HelpScreen) and app.screen.is_mounted)
            await pilot.pause()
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, ModalScreen))
        assert resumed == [False, True]
