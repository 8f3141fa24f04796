"""The command palette: the same registry as the footer and the help screen."""

from __future__ import annotations

from functools import partial

from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider

from tui.keys import KEYS, Key
from tui.screens.styled_once import StyledOnce


class KeysProvider(Provider):
    """Offers every command of :data:`tui.keys.KEYS` that can run from the palette."""

    def _commands(self) -> list[Key]:
        # Keys a widget handles itself (enter, end) are no use from the palette.
        return [key for key in KEYS if key.binding and key.action != "app.command_palette"]

    async def _run(self, key: Key) -> None:
        # The palette calls this after it closed, on the screen it was opened from.
        await self.app.run_action(key.action, self.screen)

    def _help(self, key: Key) -> str:
        shown = f" ({key.shown_key})" if key.key else ""
        return key.help + shown

    async def discover(self) -> Hits:
        for key in self._commands():
            yield DiscoveryHit(key.label, partial(self._run, key), help=self._help(key))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for key in self._commands():
            text = f"{key.label}: {key.help}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(text),
                    partial(self._run, key),
                    text=key.label,
                    help=key.shown_key or None,
                )


class Palette(CommandPalette, StyledOnce):
    """Textual's command palette, with its search line in its first frame, on an opaque
    background.

    Textual's shows only the dimmed screen until it has gathered every command (its
    container shows with the ``-ready`` class, set at the end of ``_gather_commands``
    in textual/command.py, Textual 8.2): tens of ms in which ``ctrl+p`` seems to do
    nothing. Here the search line shows at once and the commands follow.

    Textual's is translucent (``$background 60%``): its every frame, the first one
    included, renders the main screen again and blends each of its cells, and while
    traces stream each plot frame under it repaints the palette too. About half of the
    palette's first frame went there. Opaque, as the console's dialogs are
    (themes/console.tcss), it covers the console the way they do.
    """

    DEFAULT_CSS = """
    Palette {
        background: $background;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        # A class given here costs no restyle; add_class before mounting restyles it.
        super().__init__(id=id, classes="-ready")
