"""The command log: every command the console ran, with host, exit status and duration.

Routine read-only polls (the console's look at each host every few seconds) are left
out unless asked for (``show_polls``); the session log keeps them all. Two tables are
kept up to date side by side, one without the polls and one with them, and
``shift+l`` only swaps which one shows: filling a table again would measure and lay
out every row (hundreds of ms with thousands of commands). It follows the
newest command while the cursor is on the last row. Moving the
cursor up (or scrolling up with the mouse) pauses following; new commands then
only count, shown as "N new" in the border, until the cursor is back on the last
row (``end``). ``enter`` on a row opens the command's full output.
"""

from __future__ import annotations

import shlex

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message

from tui.widgets import fmt
from tui.widgets.command_table import CommandTable
from tui.widgets.lab_state import CommandView
from tui.widgets.safe_text import clean

# A row shows this much of a command; the output dialog shows all of it.
COMMAND_WIDTH = 160
COLUMNS = ("time", "host", "status", "took", "command")


def command_text(argv: list[str]) -> str:
    """The command line as a shell would take it, control characters made visible."""
    return clean(shlex.join(argv))


class CommandLog(Vertical):
    """A table of commands that follows the tail."""

    DEFAULT_CSS = """
    CommandLog {
        height: 8;
    }
    CommandLog > CommandTable {
        height: 1fr;
        overflow-x: hidden;  /* a long command is cut; enter shows all of it */
    }
    """

    class ShowOutput(Message):
        """The user asked for the full output of one command."""

        def __init__(self, cmd_id: int) -> None:
            super().__init__()
            self.cmd_id = cmd_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "commands"
        self.show_polls = False
        self.following = True
        self.waiting = 0
        self._t0 = 0.0
        self._plain = self._new_table("commands-only")
        self._with_polls = self._new_table("with-polls")
        self._with_polls.display = False

    @staticmethod
    def _new_table(table_id: str) -> CommandTable:
        return CommandTable(COLUMNS, id=table_id)

    def compose(self) -> ComposeResult:
        yield self._plain
        yield self._with_polls

    @property
    def table(self) -> CommandTable:
        """The table on show."""
        return self._with_polls if self.show_polls else self._plain

    @property
    def _rows(self) -> set[int]:
        """The cmd_ids of the rows on show."""
        return {int(key) for key in self.table.row_keys()}

    @property
    def row_count(self) -> int:
        return self.table.row_count

    def set_origin(self, t0: float) -> None:
        self._t0 = t0

    def show(self, commands: list[CommandView]) -> None:
        """Add new commands and update finished ones (in the order they happened)."""
        added = 0
        for command in commands:
            for table in (self._plain, self._with_polls):
                if command.poll and table is self._plain:
                    continue
                fresh = self._show_in(table, command)
                if fresh and table is self.table:
                    added += 1
        if not added:
            return
        if self.following:
            shown = self.table
            shown.move_cursor(row=shown.row_count - 1, animate=False)
        else:
            self.waiting += added
            self._update_subtitle()

    def _show_in(self, table: CommandTable, command: CommandView) -> bool:
        """Add ``command``'s row to ``table``, or update it there; True if it is new."""
        key = str(command.cmd_id)
        if table.has_row(key):
            # The column was sized for "running": it grows for "cancelled".
            table.update_cell(key, "status", self._status(command))
            table.update_cell(key, "took", self._took(command))
            return False
        table.add_row(
            key,
            [
                Text(fmt.offset(command.started - self._t0), style="dim"),
                Text(clean(command.host)),
                self._status(command),
                self._took(command),
                Text(fmt.ellipsize(command_text(command.argv), COMMAND_WIDTH)),
            ],
        )
        return True

    def set_show_polls(self, show: bool) -> None:
        """Show or hide the polls: the other table shows, following the newest."""
        if show == self.show_polls:
            return
        was = self.table
        self.show_polls = show
        self.border_title = "commands and polls" if show else "commands"
        now = self.table
        had_focus = was.has_focus
        now.display = True
        was.display = False
        if had_focus:
            now.focus()
        self.follow()

    def forget(self, cmd_ids: list[int]) -> None:
        """Drop rows of commands the state no longer keeps."""
        for table in (self._plain, self._with_polls):
            table.remove_rows(str(cmd_id) for cmd_id in cmd_ids)

    @staticmethod
    def _status(command: CommandView) -> Text:
        # Styles without colours: they follow every theme and read on monochrome screens.
        text = clean(command.status_text())
        if not command.finished:
            return Text(text, style="italic")
        if command.failure is not None:
            return Text(text, style="bold reverse")
        return Text(text, style="" if command.ok else "bold")

    @staticmethod
    def _took(command: CommandView) -> Text:
        if command.duration_s is None:
            return Text("")
        return Text(fmt.duration(command.duration_s), justify="right")

    def _update_subtitle(self) -> None:
        if self.following or not self.waiting:
            self.border_subtitle = ""
        else:
            self.border_subtitle = f"paused · {self.waiting} new · end follows"

    def _set_following(self, following: bool) -> None:
        self.following = following
        if following:
            self.waiting = 0
        self._update_subtitle()

    def follow(self) -> None:
        table = self.table
        self._set_following(True)
        if table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def on_command_table_scrolled_up(self, event: CommandTable.ScrolledUp) -> None:
        event.stop()
        self._set_following(False)

    def on_command_table_highlighted(self, event: CommandTable.Highlighted) -> None:
        event.stop()
        if event.table is not self.table:
            return  # the hidden table's cursor is set again when it shows
        last = event.row == self.table.row_count - 1
        if last != self.following:
            self._set_following(last)

    def on_command_table_selected(self, event: CommandTable.Selected) -> None:
        event.stop()
        self.post_message(self.ShowOutput(int(event.key)))
