"""The main screen and the plot grid draw only their background (Textual's ``BLANK``):
one line repeated, not each row drawn alike. It must look exactly as Textual's full
drawing of them would, in every theme and at both breakpoints."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rich.segment import Segment
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from tests.tui.conftest import console_at_its_end, settle
from tui.app import THEME_ORDER
from tui.replay import ReplayBackend
from tui.widgets.plot import TraceGrid

Replay = Callable[..., ReplayBackend]


def cells(strips: list[Strip]) -> list[list[tuple[str, object]]]:
    """Each line as (character, style) per cell: equal however it is cut in segments."""
    return [
        [(char, segment.style) for segment in Segment.simplify(strip) for char in segment.text]
        for strip in strips
    ]


def drawn_by_textual(widget: Widget) -> list[Strip]:
    """The widget's lines as Textual draws a widget that is not BLANK."""
    width, height = widget.size
    widget._styles_cache.clear()
    return widget._styles_cache.render_widget(widget, Region(0, 0, width, height))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["narrow", "wide"])
async def test_a_blank_container_looks_as_textual_draws_it(
    replay: Replay, size: tuple[int, int]
) -> None:
    async with console_at_its_end(replay()) as (app, pilot, screen):
        await pilot.resize_terminal(*size)
        for theme in THEME_ORDER:
            app.theme = theme
            await settle(pilot)
            for widget in (screen, screen.query_one(TraceGrid)):
                assert widget.BLANK
                width, height = widget.size
                ours = widget.render_lines(Region(0, 0, width, height))
                assert len(ours) == height and ours[0].cell_length == width > 0
                assert cells(ours) == cells(drawn_by_textual(widget)), (theme, widget)
