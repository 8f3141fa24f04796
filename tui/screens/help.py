"""The ``?`` screen: every key, generated from the registry in :mod:`tui.keys`."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import GROUPS, by_group
from tui.screens.styled_once import StyledOnce
from tui.widgets.safe_text import markup


def help_content(readonly_reason: str | None) -> Content:
    """The help text: one section per group, one line per command."""
    lines: list[Content] = []
    for group, keys in by_group().items():
        if not keys:
            continue
        title = markup("[b]$group[/]", group=GROUPS.get(group, group))
        if group == "lab" and readonly_reason:
            title += markup("  [$text-warning](disabled: $why)[/]", why=readonly_reason)
        lines.append(title)
        for key in keys:
            shown = key.shown_key or "palette"
            lines.append(
                markup("  [$text-accent b]$key[/]  $help", key=f"{shown:>9}", help=key.help)
            )
        lines.append(Content(""))
    lines.append(markup("[$text-muted]ctrl+p searches every command · escape closes this help[/]"))
    return Content("\n").join(lines)


class HelpScreen(ModalScreen[None], StyledOnce):
    """All keys, grouped."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 90%;
        max-width: 100;
        height: auto;
        max-height: 90%;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar = [
        Binding("escape,question_mark,q", "close", "close", show=False),
    ]

    def __init__(self, readonly_reason: str | None = None) -> None:
        super().__init__()
        self.readonly_reason = readonly_reason

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "miglab keys"
            yield Static(help_content(self.readonly_reason), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
