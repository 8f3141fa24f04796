"""The key bar at the bottom of the main screen, generated from the key registry.

A plain line, not Textual's Footer: the Footer rebuilds one widget per key each
time a screen comes back (a dialog closes), which cost tens of milliseconds per key
press here. Keys that change hosts are left out where they are disabled (a replay,
``--readonly``): the help screen still lists them.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.keys import KEYS, Key
from tui.widgets.safe_text import markup


def keybar_content(keys: list[Key]) -> Content:
    return Content("  ").join(
        markup("[b $footer-key-foreground]$key[/] $label", key=key.shown_key, label=key.label)
        for key in keys
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
        self.update(keybar_content(shown), layout=False)
