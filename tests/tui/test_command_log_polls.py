"""shift+l in the command log: the polls show and hide in place, rows in the order they ran.

The log keeps a table without the polls and one with them up to date side by side;
the key only swaps which one shows (re-adding every row took hundreds of ms).
"""

from __future__ import annotations

from collections.abc import Callable

from backend.events import CommandFinished, CommandStarted, Event
from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end, main_screen, running, settle
from tui.replay import ReplayBackend
from tui.screens.main import EventsArrived, MainScreen
from tui.widgets.command_log import CommandLog
from tui.widgets.command_table import CommandTable

Replay = Callable[..., ReplayBackend]


def row_ids(table: CommandTable) -> list[int]:
    """The cmd_ids of the table's rows, top to bottom."""
    return [int(key) for key in table.row_keys()]


def looks(t: float, first_id: int) -> list[Event]:
    """Three commands, the first and last polls; the second finishes."""
    a, b, c = first_id, first_id + 1, first_id + 2
    return [
        CommandStarted(t=t + 1, host="qemu1", cmd_id=a, argv=["xl", "list"], poll=True),
        CommandStarted(t=t + 2, host="qemu1", cmd_id=b, argv=["xl", "migrate", "g"]),
        CommandStarted(t=t + 3, host="storage", cmd_id=c, argv=["tgtadm"], poll=True),
        CommandFinished(
            t=t + 4, host="qemu1", cmd_id=b, argv=["xl", "migrate", "g"], exit_status=0,
            duration_s=3.0,
        ),
    ]  # fmt: skip


async def arrive(screen: MainScreen, events: list[Event], log: CommandLog, rows: int) -> None:
    screen.post_message(EventsArrived(events))
    await until(lambda: log.table.row_count == rows)


async def test_the_log_shows_the_right_rows_in_order_after_each_toggle(replay: Replay) -> None:
    backend = replay()
    async with console_at_its_end(backend) as (_app, pilot, screen):
        log = screen.query_one(CommandLog)
        state = screen.state
        t = backend.session.events[-1].t

        def expected(polls: bool) -> list[int]:
            return [i for i, c in state.commands.items() if polls or not c.poll]

        assert row_ids(log.table) == expected(False)
        await arrive(screen, looks(t, 900), log, len(expected(False)) + 1)
        assert row_ids(log.table) == expected(False)

        await pilot.press("L")
        await until(lambda: log.border_title == "commands and polls")
        assert row_ids(log.table) == expected(True)
        assert {900, 902} <= set(row_ids(log.table))
        assert log._rows == set(expected(True))
        assert log.table.cursor_row == log.table.row_count - 1 and log.following
        # The finished command's row says so in the table with the polls too.
        assert str(log.table.get_cell("901", "took")) == "3.0 s"

        # Commands arriving while the polls show land in both tables, in order.
        await arrive(screen, looks(t + 10, 910), log, len(expected(True)) + 3)
        assert row_ids(log.table) == expected(True)

        await pilot.press("L")
        await until(lambda: log.border_title == "commands")
        assert row_ids(log.table) == expected(False)
        assert 911 in row_ids(log.table) and 910 not in row_ids(log.table)
        assert log.table.cursor_row == log.table.row_count - 1 and log.following

        # More while they are hidden, then shown again: all of them, in order.
        await arrive(screen, looks(t + 20, 920), log, len(expected(False)) + 1)
        await pilot.press("L")
        await until(lambda: log.border_title == "commands and polls")
        assert row_ids(log.table) == expected(True)
        assert [920, 921, 922] == row_ids(log.table)[-3:]


async def test_toggling_the_polls_does_not_make_the_rows_again(replay: Replay) -> None:
    backend = replay()
    async with console_at_its_end(backend) as (_app, pilot, screen):
        log = screen.query_one(CommandLog)
        t = backend.session.events[-1].t
        await arrive(screen, looks(t, 900), log, log.table.row_count + 1)
        plain_row = log.table.get_row("901")
        await pilot.press("L")
        await until(lambda: log.border_title == "commands and polls")
        polls_row = log.table.get_row("902")
        await pilot.press("L")
        await until(lambda: log.border_title == "commands")
        # The very cells from before: shown again, not built again.
        assert all(a is b for a, b in zip(log.table.get_row("901"), plain_row, strict=True))
        await pilot.press("L")
        await until(lambda: log.border_title == "commands and polls")
        assert all(a is b for a, b in zip(log.table.get_row("902"), polls_row, strict=True))


async def test_the_focus_stays_in_the_log_when_the_polls_toggle(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        log = main_screen(app).query_one(CommandLog)
        log.table.focus()
        await pilot.pause()
        await pilot.press("L")
        await until(lambda: log.border_title == "commands and polls")
        assert app.focused is log.table
        await pilot.press("L")
        await until(lambda: log.border_title == "commands")
        assert app.focused is log.table
