"""The full output of one command, opened with enter in the command log."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import RichLog, Static

from tui.widgets import fmt
from tui.widgets.command_log import command_text
from tui.widgets.lab_state import CommandView


def header_markup(command: CommandView) -> str:
    status = command.status_text()
    took = f" in {fmt.duration(command.duration_s)}" if command.duration_s is not None else ""
    colour = "$text-success" if command.ok else "$text-error" if command.finished else "$text-muted"
    return (
        f"[b]{escape(command.host)}[/] [$text-muted]({escape(command.channel)})[/]\n"
        f"[$text-accent]$[/] {escape(command_text(command.argv))}\n"
        f"[{colour}]{escape(status)}[/]{took}"
        + (f"  [$text-error]{escape(command.failure)}[/]" if command.failure else "")
    )


def output_lines(command: CommandView) -> list[tuple[str, str]]:
    """What the command printed: every logged line, else the tails the log kept."""
    if command.output:
        return list(command.output)
    lines = [("stdout", line) for line in command.stdout_tail]
    lines += [("stderr", line) for line in command.stderr_tail]
    return lines


class CommandOutputScreen(ModalScreen[None]):
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
    CommandOutputScreen RichLog {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar = [Binding("escape,q,enter", "close", "close", show=False)]

    def __init__(self, command: CommandView) -> None:
        super().__init__()
        self.command = command

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"command {self.command.cmd_id}"
            box.border_subtitle = "escape closes"
            yield Static(header_markup(self.command), id="header")
            yield RichLog(id="output", wrap=False, markup=False, highlight=False)

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        lines = output_lines(self.command)
        if not lines:
            log.write(Text("(no output)", style="italic"))
        for stream, line in lines:
            # stderr is marked by a prefix as well as a style: it must read in monochrome.
            if stream == "stderr":
                log.write(Text.assemble(("! ", "bold"), (line, "italic")))
            else:
                log.write(Text("  " + line))
        dropped = self.command.lines_seen - len(self.command.output)
        if dropped > 0:
            log.write(Text(f"({dropped} earlier lines are in the session log)", style="italic"))
        log.focus()

    def action_close(self) -> None:
        self.dismiss(None)
