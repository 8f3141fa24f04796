"""enter opens one output dialog, kept between opens: each time it shows that command's
header and output only (nothing left of the command shown before)."""

from __future__ import annotations

from collections.abc import Callable

from textual.widgets import RichLog, Static

from tests.support.waiting import until
from tests.tui.conftest import main_screen, running, settle
from tui.replay import ReplayBackend
from tui.screens.main import MainScreen
from tui.screens.output import CommandOutputScreen
from tui.widgets.command_log import CommandLog

Replay = Callable[..., ReplayBackend]


def shown(screen: CommandOutputScreen) -> tuple[str, str, list[str]]:
    """The dialog's title, header and output lines, as text."""
    title = str(screen.query_one("Vertical").border_title)
    header = str(screen.query_one("#header", Static).render())
    lines = [str(line.text) for line in screen.query_one(RichLog).lines]
    return title, header, lines


async def open_row(app: object, pilot: object, log: CommandLog, row: int) -> CommandOutputScreen:
    log.table.focus()
    log.table.move_cursor(row=row)
    await pilot.press("enter")  # type: ignore[attr-defined]
    await until(lambda: isinstance(app.screen, CommandOutputScreen))  # type: ignore[attr-defined]
    screen = app.screen  # type: ignore[attr-defined]
    assert isinstance(screen, CommandOutputScreen)
    await pilot.pause()  # type: ignore[attr-defined]
    return screen


async def test_each_open_shows_its_own_command_in_the_same_dialog(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        main = main_screen(app)
        log = main.query_one(CommandLog)
        rows = [int(str(row.key.value)) for row in log.table.ordered_rows]
        with_output = [
            (index, cmd_id)
            for index, cmd_id in enumerate(rows)
            if main.state.commands[cmd_id].output or main.state.commands[cmd_id].stdout_tail
        ]
        (first_row, first_id), (second_row, second_id) = with_output[0], with_output[-1]
        assert first_id != second_id

        first = await open_row(app, pilot, log, first_row)
        title, header, lines = shown(first)
        assert title == f"command {first_id}"
        before = lines
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen))

        second = await open_row(app, pilot, log, second_row)
        assert second is first  # kept, not made again
        title, header, lines = shown(second)
        assert title == f"command {second_id}"
        command = main.state.commands[second_id]
        assert " ".join(command.argv[:2]) in header
        expected = [line for _stream, line in command.output] or list(command.stdout_tail)
        assert [line.strip().lstrip("! ") for line in lines][: len(expected)] == [
            line.strip() for line in expected
        ]
        assert lines != before
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen))
