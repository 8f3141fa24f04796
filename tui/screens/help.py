"""The ``?`` screen: every key, generated from the registry in :mod:`tui.keys`."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import GROUPS, by_group


def help_markup(readonly_reason: str | None) -> str:
    """The help text: one section per group, one line per command."""
    lines: list[str] = []
    for group, keys in by_group().items():
        if not keys:
            continue
        title = f"[b]{escape(GROUPS.get(group, group))}[/]"
        if group == "lab" and readonly_reason:
            title += f"  [$text-warning](disabled: {escape(readonly_reason)})[/]"
        lines.append(title)
        for key in keys:
            shown = key.shown_key or "palette"
            lines.append(f"  [$text-accent b]{escape(shown):>9}[/]  {escape(key.help)}")
        lines.append("")
    lines.append("[$text-muted]ctrl+p searches every command · escape closes this help[/]")
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
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
            yield Static(help_markup(self.readonly_reason), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
