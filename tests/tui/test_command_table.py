"""The command log's table: rows drawn once, a fixed header, a row cursor.

The log was a DataTable, which drew every cell again each time it was shown, got a row
or changed theme (15 ms of the frame after ``l`` with 20 commands). These tests hold the
table to drawing a row once per look, and to behaving as a table: keys, clicks, columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.message import Message
from textual.strip import Strip

from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end
from tui.replay import ReplayBackend
from tui.widgets.command_log import CommandLog
from tui.widgets.command_table import CommandTable

Replay = Callable[..., ReplayBackend]


def count_frames(table: CommandTable) -> list[int]:
    """A list that grows by one each time the table draws a line on screen."""
    drawn: list[int] = []
    original = table.render_line

    def render_line(y: int) -> Strip:
        drawn.append(y)
        return original(y)

    table.render_line = render_line  # type: ignore[method-assign]
    return drawn


async def test_showing_the_log_again_draws_no_row_again(replay: Replay) -> None:
    async with console_at_its_end(replay()) as (_app, pilot, screen):
        log = screen.query_one(CommandLog)
        table = log.table
        assert table.row_count > 5
        await pilot.press("l")
        await until(lambda: not log.display)
        drawn_before = table.rows_drawn
        lines = count_frames(table)
        await pilot.press("l")
        await until(lambda: log.display and len(lines) > 0)
        await pilot.pause()
        assert len(set(lines)) >= 4  # the header and rows were on screen again...
        assert table.rows_drawn == drawn_before  # ...every one from the cache


async def test_a_new_theme_draws_each_row_on_screen_once(replay: Replay) -> None:
    async with console_at_its_end(replay()) as (_app, pilot, screen):
        table = screen.query_one(CommandLog).table
        before = table.rows_drawn
        lines = count_frames(table)
        await pilot.press("t")
        await until(lambda: len(lines) > 0)
        await pilot.pause()
        drawn = table.rows_drawn - before
        on_screen = table.scrollable_content_region.height
        # In the new colours; at most twice each (a frame may come between the restyle
        # and the focus's), never once per frame as the DataTable did.
        assert 1 <= drawn <= 2 * on_screen
        again = table.rows_drawn
        table.refresh()
        await pilot.pause()
        assert table.rows_drawn == again


class TableApp(App[None]):
    """One table of 30 rows, 6 lines high (a header and 5 rows)."""

    CSS = "CommandTable { height: 6; }"
    COLUMNS: ClassVar = ("n", "status", "took", "command")

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        table = CommandTable(self.COLUMNS)
        for n in range(30):
            table.add_row(
                str(n),
                [Text(str(n)), Text("ok"), Text(f"{n}.0 s", justify="right"), Text(f"cmd {n}")],
            )
        yield table

    def on_command_table_highlighted(self, message: CommandTable.Highlighted) -> None:
        self.messages.append(message)

    def on_command_table_selected(self, message: CommandTable.Selected) -> None:
        self.messages.append(message)


def line_text(table: CommandTable, y: int) -> str:
    return "".join(segment.text for segment in table.render_line(y))


def selected(app: TableApp) -> list[str]:
    return [m.key for m in app.messages if isinstance(m, CommandTable.Selected)]


async def test_keys_move_the_cursor_and_the_header_stays_on_top() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(CommandTable)
        table.focus()
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == 29
        assert line_text(table, 0).split() == ["n", "status", "took", "command"]
        assert line_text(table, 5).split()[0] == "29"  # the last row, at the bottom
        await pilot.press("up", "up", "home")
        await pilot.pause()
        assert table.cursor_row == 0 and line_text(table, 1).split()[0] == "0"
        await pilot.press("pagedown", "down", "enter")
        await pilot.pause()
        assert table.cursor_row == 6 and selected(app) == ["6"]
        rows = [m.row for m in app.messages if isinstance(m, CommandTable.Highlighted)]
        assert rows == [29, 28, 27, 0, 5, 6]


async def test_end_on_the_last_row_still_says_where_the_cursor_is() -> None:
    # After a scroll with the mouse the log stops following; end must start it again
    # even though the cursor never left the last row.
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(CommandTable)
        table.focus()
        table.move_cursor(row=29)
        await pilot.pause()
        app.messages.clear()
        await pilot.press("end")
        await pilot.pause()
        assert [m.row for m in app.messages if isinstance(m, CommandTable.Highlighted)] == [29]


async def test_a_click_on_a_row_selects_it_and_on_the_header_nothing() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(CommandTable)
        await pilot.click(CommandTable, offset=(3, 2))  # the second row
        await pilot.pause()
        assert table.cursor_row == 1 and selected(app) == ["1"]
        await pilot.click(CommandTable, offset=(3, 0))
        await pilot.pause()
        assert selected(app) == ["1"]


async def test_columns_widen_for_a_longer_cell_and_keep_their_width_when_rows_go() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(CommandTable)
        assert table.column_width("status") == len("status")
        table.update_cell("3", "status", Text("connection lost"))
        await pilot.pause()
        assert table.column_width("status") == len("connection lost")
        took = table.column_width("took")
        table.move_cursor(row=0)
        await pilot.pause()
        # "took" is right-aligned in its column, after the widened status.
        first = line_text(table, 1)
        assert first.index("0.0 s") + len("0.0 s") == first.index(" cmd 0") - 1
        assert took == len("29.0 s")  # the widest cell, wider than "took"
        table.move_cursor(row=3)
        table.remove_rows(["0", "1", "3"])
        await pilot.pause()
        assert table.column_width("status") == len("connection lost")
        assert table.row_keys()[:2] == ["2", "4"]
        assert table.cursor_row == 1  # its row went: the cursor is on the next, "4"


def test_a_row_of_the_wrong_length_or_a_repeated_key_is_refused() -> None:
    table = CommandTable(("a", "b"))
    table.add_row("1", [Text("x"), Text("y")])
    errors: list[Any] = []
    for cells, key in (([Text("x")], "2"), ([Text("x"), Text("y")], "1")):
        try:
            table.add_row(key, cells)
        except (KeyError, ValueError) as error:
            errors.append(type(error))
    assert errors == [ValueError, KeyError]
