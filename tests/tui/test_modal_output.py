"""The output dialog is as tall as what it shows (up to 90 % of the screen).

It was always 90 % of the screen with a scrollbar, its first frame drawing 40-odd
lines (and a scrollbar) for a command that printed one or none.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.containers import Vertical
from textual.widgets import RichLog

from tests.support.waiting import until
from tests.tui.conftest import running, settle
from tui.replay import ReplayBackend
from tui.screens.output import CommandOutputScreen
from tui.widgets.lab_state import CommandView

Replay = Callable[..., ReplayBackend]
SIZE = (160, 48)


def command(lines: int) -> CommandView:
    view = CommandView(
        cmd_id=7, host="qemu1", argv=["seq", str(lines)], started=0.0, channel="pool"
    )
    view.finished, view.exit_status, view.duration_s = True, 0, 0.01
    view.output.extend(("stdout", str(n)) for n in range(1, lines + 1))
    view.lines_seen = lines
    return view


async def shown(replay: Replay, lines: int) -> tuple[int, int, bool, list[str]]:
    """The dialog's height, its log's height, whether the log scrolls, its lines."""
    backend = replay()
    async with running(backend, size=SIZE) as (app, pilot):
        await settle(pilot, backend)
        await app.push_screen(CommandOutputScreen(command(lines)))
        dialog = app.screen
        log = dialog.query_one(RichLog)
        await until(lambda: len(log.lines) == max(lines, 1) and log.size.height > 0)
        await pilot.pause()
        box = dialog.query_one(Vertical)
        text = [line.text.strip() for line in log.lines]
        return box.outer_size.height, log.size.height, log.show_vertical_scrollbar, text


async def test_a_short_output_makes_a_short_dialog_without_scrollbar(replay: Replay) -> None:
    box, log, scrollbar, text = await shown(replay, 3)
    assert text == ["1", "2", "3"]
    assert log == 3  # every line, no more
    assert box < SIZE[1] // 2
    assert not scrollbar


async def test_no_output_is_one_line(replay: Replay) -> None:
    _, log, scrollbar, text = await shown(replay, 0)
    assert text == ["(no output)"]
    assert log == 1 and not scrollbar


async def test_a_long_output_fills_90_percent_and_scrolls(replay: Replay) -> None:
    box, log, scrollbar, text = await shown(replay, 500)
    assert text[0] == "1" and text[-1] == "500"
    assert box == int(SIZE[1] * 0.9)
    assert scrollbar and log < 500
