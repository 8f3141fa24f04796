"""ctrl+p's palette covers the console, with nothing of it to re-render under it.

Textual's palette is translucent: each of its frames, the first one included, renders
the main screen again and blends every cell of it, and while traces stream each plot
frame under it repaints the palette too.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.command import CommandInput, CommandPalette

from tests.support.waiting import until
from tests.tui.conftest import running, settle
from tui.replay import ReplayBackend
from tui.screens.palette import Palette

Replay = Callable[..., ReplayBackend]


async def test_the_palette_is_opaque_in_every_theme(replay: Replay) -> None:
    backend = replay()
    async with running(backend, size=(160, 48)) as (app, pilot):
        await settle(pilot, backend)
        for theme in app.theme_names:
            app.theme = theme
            await pilot.press("ctrl+p")
            await until(lambda: isinstance(app.screen, Palette) and app.screen.is_mounted)
            palette = app.screen
            assert palette.styles.background.a == 1, theme
            # What shows is still the palette: its search line, focused.
            assert app.focused is palette.query_one(CommandInput)
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, CommandPalette))
