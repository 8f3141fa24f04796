"""The yes/no dialog of every destructive action: it shows the exact commands, host by host.

Focus starts on No, so a stray enter does nothing; ``y`` and ``n`` answer directly
and escape means no. The commands are those the backend will run (its dry-run
plan), quoted as a shell would take them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.screens.styled_once import StyledOnce
from tui.widgets.safe_text import markup, plain

if TYPE_CHECKING:
    from backend.drivers.base import HostCommand


def commands_content(commands: Sequence[HostCommand]) -> Content:
    """The commands grouped by host, in the order they will run (host strings as text)."""
    if not commands:
        return markup("[$text-muted](no command to run: nothing needs to change)[/]")
    lines: list[Content] = []
    host: str | None = None
    for command in commands:
        if command.host != host:
            host = command.host
            lines.append(markup("[b]on $host:[/]", host=host))
        lines.append(markup("  [$text-accent]$[/] $argv", argv=shlex.join(command.argv)))
    return Content("\n").join(lines)


class ConfirmScreen(ModalScreen[bool], StyledOnce):
    """Ask before a destructive action; dismisses with True only on an explicit yes."""

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
    }
    ConfirmScreen > #dialog {
        width: 90%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        padding: 0 1;
    }
    ConfirmScreen #commands {
        height: auto;
        max-height: 16;
        margin: 1 0;
    }
    ConfirmScreen #buttons {
        height: auto;
        align-horizontal: right;
    }
    ConfirmScreen Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar = [
        Binding("y", "answer(True)", "yes", show=False),
        Binding("n", "answer(False)", "no", show=False),
        Binding("escape", "answer(False)", "no", show=False),
        Binding("left,right,tab", "app.focus_next", show=False),
    ]

    AUTO_FOCUS = "#no"

    def __init__(self, title: str, question: str, commands: Sequence[HostCommand]) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.commands = list(commands)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = plain(self.title_text)
            yield Static(plain(self.question, lines=True), id="question")
            with VerticalScroll(id="commands"):
                yield Static(commands_content(self.commands), id="command-list")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
