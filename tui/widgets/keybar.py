"""The key bar at the bottom of the main screen, generated from the key registry.

A plain line, not Textual's Footer: the Footer rebuilds one widget per key each
time a screen comes back (a dialog closes), which cost tens of milliseconds per key
press here. Keys that change hosts are left out where they are disabled (a replay,
``--readonly``): the help screen still lists them.
"""

from __future__ import annotations

from textual.markup import escape
from textual.widgets import Static

from tui.keys import KEYS, Key


def keybar_markup(keys: list[Key]) -> str:
    return "  ".join(
        f"[b $footer-key-foreground]{escape(key.shown_key)}[/] {escape(key.label)}" for key in keys
    )


class KeyBar(Static):
    """One line of keys."""

    DEFAULT_CSS = """
    KeyBar {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        padding: 0 1;
    }
    """

    def show(self, *, readonly: bool, replay: bool) -> None:
        shown = [
            key
            for key in KEYS
            if key.key is not None
            and (key.footer or (replay and key.group == "replay" and key.action != "close_replay"))
            and not (readonly and key.changes_host)
        ]
        self.update(keybar_markup(shown), layout=False)
