"""The full output of one command, opened with enter in the command log."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import RichLog, Static

from tui.screens.styled_once import StyledOnce
from tui.widgets import fmt
from tui.widgets.command_log import command_text
from tui.widgets.lab_state import CommandView
from tui.widgets.safe_text import clean, markup


def header_content(command: CommandView) -> Content:
    """Host, channel, command line and status: the host's strings shown as text."""
    took = f" in {fmt.duration(command.duration_s)}" if command.duration_s is not None else ""
    colour = "$text-success" if command.ok else "$text-error" if command.finished else "$text-muted"
    header = markup(
        "[b]$host[/] [$text-muted]($channel)[/]\n[$text-accent]$[/] $command\n"
        f"[{colour}]$status[/]$took",
        host=command.host,
        channel=command.channel,
        command=command_text(command.argv),
        status=command.status_text(),
        took=took,
    )
    if command.failure:
        header += markup("  [$text-error]$failure[/]", failure=command.failure)
    return header


def output_lines(command: CommandView) -> list[tuple[str, str]]:
    """What the command printed: every logged line, else the tails the log kept."""
    if command.output:
        return list(command.output)
    lines = [("stdout", line) for line in command.stdout_tail]
    lines += [("stderr", line) for line in command.stderr_tail]
    return lines


SHORT_OUTPUT = 16
"""Up to this many lines, the dialog is as tall as what it shows: its first frame draws
those lines, not a 90 % high box with a scrollbar (most commands print a few lines)."""


class CommandOutputScreen(ModalScreen[None], StyledOnce):
    """Host, command, status and every output line (stderr marked)."""

    DEFAULT_CSS = """
    CommandOutputScreen {
        align: center middle;
    }
    CommandOutputScreen > Vertical {
        width: 95%;
        height: 90%;
        padding: 0 1;
    }
    CommandOutputScreen #header {
        height: auto;
        margin-bottom: 1;
    }
    CommandOutputScreen.-short > Vertical {
        height: auto;
    }
    CommandOutputScreen RichLog {
        height: 1fr;
        overflow-y: auto;
    }
    CommandOutputScreen.-short RichLog {
        height: auto;
    }
    """

    BINDINGS: ClassVar = [Binding("escape,q,enter", "close", "close", show=False)]

    def __init__(self, command: CommandView) -> None:
        self.lines = output_lines(command)
        self.dropped = command.lines_seen - len(command.output)
        shown = max(len(self.lines), 1) + (self.dropped > 0)
        super().__init__(classes="-short" if shown <= SHORT_OUTPUT else None)
        self.command = command

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"command {self.command.cmd_id}"
            box.border_subtitle = "escape closes"
            yield Static(header_content(self.command), id="header")
            yield RichLog(id="output", wrap=False, markup=False, highlight=False)

    def on_mount(self) -> None:
        # Keys come faster than screens mount: enter then escape can dismiss this screen
        # before it mounts, and then its widgets are gone. Nothing to fill then.
        found = list(self.query(RichLog))
        if not found:
            return
        log = found[0]
        lines = self.lines
        if not lines:
            log.write(Text("(no output)", style="italic"))
        for stream, line in lines:
            # stderr is marked by a prefix as well as a style: it must read in monochrome.
            # A host's escapes show as ␛ and never reach the terminal.
            if stream == "stderr":
                log.write(Text.assemble(("! ", "bold"), (clean(line, lines=True), "italic")))
            else:
                log.write(Text("  " + clean(line, lines=True)))
        if self.dropped > 0:
            log.write(
                Text(f"({self.dropped} earlier lines are in the session log)", style="italic")
            )
        log.focus()

    def action_close(self) -> None:
        self.dismiss(None)
