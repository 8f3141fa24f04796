"""The miglab console: a Textual app around one :class:`~tui.backend_api.ConsoleBackend`.

The app owns what is not one screen's: the themes (``themes/*.toml`` palettes and
``themes/*.tcss`` styles, ``t`` cycles them, ``NO_COLOR`` starts the high-contrast
one and Textual reduces it to grey), the command palette (the key registry), and
quitting: if an action is running, ``q`` asks first, then cancels it, waits for its
cleanup and closes every backend (which saves the session log) before exiting.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, ClassVar

from textual import events, work
from textual._styles_cache import StylesCache
from textual.app import App
from textual.command import CommandInput, CommandList, CommandPalette, SearchIcon
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.notifications import Notify
from textual.theme import Theme
from textual.widgets import Button, Input, LoadingIndicator, OptionList, RichLog, Static
from textual.widgets._toast import Toast, ToastHolder, ToastRack

from tui import keys, textual_fixes
from tui.backend_api import ConsoleBackend, RecordsEndStatus
from tui.driver import ConsoleDriver, TerminalGone
from tui.garbage import TICK_S, FullPasses
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.output import CommandOutputScreen
from tui.screens.palette import KeysProvider, Palette
from tui.screens.pickers import Choice, OpenLog
from tui.theme_css import ThemeStylesheet, default_css_sources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

THEMES_DIR = Path(__file__).resolve().parent.parent / "themes"
THEME_ORDER = ("miglab-dark", "miglab-light", "miglab-high-contrast")
DEFAULT_THEME = "miglab-dark"
MONOCHROME_THEME = "miglab-high-contrast"
LATER_WIDGETS: tuple[type[DOMNode], ...] = (
    *(Palette, CommandInput, CommandList, SearchIcon, LoadingIndicator, Button),
    *(HelpScreen, VerticalScroll, Static),
    *(CommandOutputScreen, RichLog, Vertical),
    *(OpenLog, Choice, Input, OptionList),
    *(ConfirmScreen, Horizontal),
    *(Toast, ToastHolder),
)
"""What the console shows after its first frame (the palette, help, the dialogs, the
toasts), down to the widgets in them: their DEFAULT_CSS is parsed ahead."""

MAX_TOASTS = 5
"""Notifications shown at once; a new one beyond them takes the oldest away."""
RELEASE_S = 5.0
"""How often the styles Textual keeps for widgets that are gone are let go (see
:meth:`MiglabApp.release_removed_widgets`)."""
PREWARM_STEP_S = 0.01
"""After the first frame, stylesheets are parsed ahead one source per step this far
apart (the dialogs' and the palette's, then the other themes'), so that the first
key that shows one finds it parsed, and no key waits long behind a step."""

_THEME_FIELDS = {
    "name": str,
    "primary": str,
    "secondary": str,
    "warning": str,
    "error": str,
    "success": str,
    "accent": str,
    "foreground": str,
    "background": str,
    "surface": str,
    "panel": str,
    "boost": str,
    "dark": bool,
    "luminosity_spread": float,
    "text_alpha": float,
    "variables": dict,
}


class ThemeFileError(Exception):
    """A theme file that cannot be used; the message names the file and the key."""


def load_theme(path: Path) -> Theme:
    """A Textual Theme from a ``themes/NAME.toml`` file."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ThemeFileError(f"{path}: {error}") from None
    for key, value in data.items():
        expected = _THEME_FIELDS.get(key)
        if expected is None:
            known = ", ".join(_THEME_FIELDS)
            raise ThemeFileError(f"{path}: unknown key {key!r} (known: {known})")
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = data[key] = float(value)
        if not isinstance(value, expected):
            raise ThemeFileError(f"{path}: {key} must be a {expected.__name__}")
    if "name" not in data or "primary" not in data:
        raise ThemeFileError(f"{path}: a theme needs at least name and primary")
    variables = data.get("variables", {})
    if not all(isinstance(v, str) for v in variables.values()):
        raise ThemeFileError(f"{path}: every value in [variables] must be a string")
    return Theme(**data)


def load_themes(directory: Path = THEMES_DIR) -> list[Theme]:
    """Every theme in ``directory``, miglab's own first in their cycling order."""
    themes = [load_theme(path) for path in sorted(directory.glob("*.toml"))]
    rank = {name: index for index, name in enumerate(THEME_ORDER)}
    return sorted(themes, key=lambda t: (rank.get(t.name, len(rank)), t.name))


def stylesheets(directory: Path = THEMES_DIR) -> list[Path]:
    """The shared console.tcss first, then each theme's own."""
    shared = directory / "console.tcss"
    return [shared, *sorted(p for p in directory.glob("*.tcss") if p != shared)]


class MiglabApp(App[int]):
    """The console."""

    TITLE = "miglab"
    CSS_PATH = stylesheets()  # type: ignore[assignment]
    COMMANDS: ClassVar = {KeysProvider}
    # With the palette's key bound here, Textual adds no second (hidden) one.
    BINDINGS: ClassVar = [*App.BINDINGS, *keys.app_bindings()]

    def __init__(self, backend: ConsoleBackend, *, theme: str | None = None) -> None:
        super().__init__()
        textual_fixes.install()
        # Parsed rules kept per theme (Textual parses everything again on each change).
        self.stylesheet = ThemeStylesheet(variables=self.stylesheet._variables)
        self.backend = backend
        self.theme_names: list[str] = []
        for loaded in load_themes():
            self.register_theme(loaded)
            self.theme_names.append(loaded.name)
        wanted = theme or (MONOCHROME_THEME if self.no_color else DEFAULT_THEME)
        if wanted not in self.available_themes:
            raise ThemeFileError(f"no theme {wanted!r}; themes: {', '.join(self.theme_names)}")
        self.theme = wanted
        self._quitting = False
        self.css_prewarmed = False
        """True once every stylesheet has been parsed ahead (see _prewarm_themes)."""
        self.full_passes = FullPasses()
        """The garbage collector's full passes, between keys (tui/garbage.py)."""

    def get_driver_class(self) -> type[Driver]:
        """Textual's choice, but on a Linux terminal the driver that knows escape sooner."""
        driver = super().get_driver_class()
        return ConsoleDriver if driver is LinuxDriver else driver

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """miglab's variables for a theme that does not set them (Textual's own themes)."""
        return self._variable_defaults(self.current_theme)

    def css_variables_for(self, theme: Theme) -> dict[str, str]:
        """What :meth:`get_css_variables` gives while ``theme`` is the current one."""
        variables = {**theme.to_color_system().generate(), **theme.variables}
        return {**self._variable_defaults(theme), **variables}

    @staticmethod
    def _variable_defaults(theme: Theme) -> dict[str, str]:
        fallback = theme.foreground or theme.primary
        return {
            "trace-ping": theme.primary,
            "trace-cpu": theme.success or fallback,
            "trace-memory": theme.secondary or fallback,
            "trace-disk": theme.warning or fallback,
            "trace-build": theme.accent or fallback,
            "trace-dirtier": theme.error or fallback,
            "trace-other": fallback,
            "trace-loss": theme.error or fallback,
            "trace-window": theme.accent or fallback,
            "trace-axes": fallback,
        }

    def on_mount(self) -> None:
        self.push_screen(MainScreen(self.backend))
        self.set_interval(RELEASE_S, self.release_removed_widgets, name="release widgets")
        self.call_after_refresh(self._prewarm_themes)

    def _prewarm_themes(self) -> None:
        """Parse ahead, a source at a time: the widgets not shown yet (a dialog, the
        palette, a toast), in this theme first, then everything in the other themes."""
        stylesheet = self.stylesheet
        if not isinstance(stylesheet, ThemeStylesheet):
            return
        widgets = default_css_sources(LATER_WIDGETS)
        names = [self.theme, *(name for name in self.theme_names if name != self.theme)]
        steps = (
            step
            for name in names
            for step in stylesheet.prewarm(
                self.css_variables_for(self.available_themes[name]), widgets
            )
        )

        def next_step() -> None:
            try:
                next(steps)
            except StopIteration:
                self.css_prewarmed = True
                if not self.is_headless:  # a test process runs many apps: not there
                    self.full_passes.take_over()
                    self.set_interval(TICK_S, self.full_passes.tick, name="full gc passes")
                return
            self.set_timer(PREWARM_STEP_S, next_step, name="theme prewarm")

        next_step()

    def on_notify(self, _event: Notify) -> None:
        """Keep at most MAX_TOASTS up: the oldest go (before Textual adds the new one).

        Textual keeps every notification until its timeout, and every screen that comes
        up (a dialog, the palette, the main screen again) mounts a toast for each: a
        key held down on a refused action stacked dozens, and opening a dialog then
        took seconds. Uses ``App._unnotify`` (Textual 8.2): there is no public way to
        take one notification away.
        """
        live = list(self._notifications)
        for oldest in live[: max(0, len(live) - (MAX_TOASTS - 1))]:
            self._unnotify(oldest, refresh=False)
        self._remove_stale_toast_holders()

    @staticmethod
    def release_removed_widgets() -> None:
        """Let go of the drawn lines of widgets that are gone (toasts, closed dialogs).

        Textual caches ``StylesCache.get_inner_outer`` with ``lru_cache(1024)`` on the
        method (textual/_styles_cache.py, Textual 8.2), so the cache holds each widget's
        StylesCache, and with it the widget's last drawn lines, until 1024 newer entries
        push it out. A toast every few seconds kept thousands of dead strips: 1,000 more
        objects a second with a refused key held down, and full garbage collections
        grew from 10 to 100 ms in a minute. The cached values are two styles, quickly
        made again.
        """
        StylesCache.get_inner_outer.cache_clear()

    def _remove_stale_toast_holders(self) -> None:
        """Take away the holders of toasts whose notification is gone.

        A toast that times out removes its holder; one whose notification went early
        (above, or Textual's own clear) is removed by ``ToastRack.show`` without it
        (textual/widgets/_toast.py, Textual 8.2). The empty holders stayed mounted for
        as long as the console ran: a refused key held down left dozens a minute, each
        with its caches, and every layout of the screen went through them.
        """
        live = {ToastRack._toast_id(notification) for notification in self._notifications}
        for screen in self.screen_stack:
            for holder in screen.query(ToastHolder):
                if holder.id not in live:
                    holder.remove()

    def on_unmount(self) -> None:
        self.full_passes.give_back()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self.full_passes.input_seen()  # no full gc pass while keys come
        if isinstance(event, events.Key):
            # The key's frame first: the plots wait (they redraw right after).
            for screen in self.main_screens():
                screen.hold_plots()
        await super().on_event(event)

    def _handle_exception(self, error: Exception) -> None:
        # An unhandled error ends the app: the session logs say so. They are written
        # by whoever runs the app (run_console_async, the demo), once it has stopped.
        for backend in {id(b): b for b in self._backends()}.values():
            if isinstance(backend, RecordsEndStatus):
                backend.set_end_status("crashed")
        super()._handle_exception(error)

    def _backends(self) -> list[ConsoleBackend]:
        return [self.backend, *(screen.backend for screen in self.main_screens())]

    def action_command_palette(self) -> None:
        """Textual's command palette, showing its search line in its first frame."""
        if self.use_command_palette and not isinstance(self.screen, CommandPalette):
            self.push_screen(Palette(id="--command-palette"))

    def action_next_theme(self) -> None:
        names = self.theme_names or [self.theme]
        index = names.index(self.theme) if self.theme in names else -1
        # No notification: the whole screen changing is feedback enough (and a toast
        # costs a layout pass of its own).
        self.theme = names[(index + 1) % len(names)]

    def main_screens(self) -> list[MainScreen]:
        return [screen for screen in self.screen_stack if isinstance(screen, MainScreen)]

    async def action_quit(self) -> None:
        if not self._quitting:
            self._quit_flow()

    @work(group="quit", exclusive=True, exit_on_error=False)
    async def _quit_flow(self) -> None:
        busy = [s for s in self.main_screens() if s.running is not None and not s.backend.readonly]
        if busy:
            screen = busy[0]
            try:
                commands = await screen.backend.plan_cancel()
            except Exception:  # the question still stands without the exact commands
                commands = []
            question = (
                f"{screen.running} is running. Quitting stops it first: its cleanup runs, "
                "then the session log is saved."
            )
            if not await self.push_screen_wait(ConfirmScreen("Quit miglab?", question, commands)):
                return
        if busy:
            self.notify("stopping, then saving the session log…", timeout=30)
        await self._close_and_exit()

    def on_terminal_gone(self, _message: TerminalGone) -> None:
        """The terminal hung up: close as a confirmed ``q`` does (what runs is stopped,
        its cleanup runs, the session log is saved); there is nobody left to ask."""
        if not self._quitting:
            self.run_worker(self._close_and_exit(), group="quit", exclusive=True)

    async def _close_and_exit(self) -> None:
        self._quitting = True
        for screen in reversed(self.main_screens()):
            await screen.close_backend()
        self.exit(0)


def run_console(backend: ConsoleBackend, *, theme: str | None = None) -> int:
    """Run the console until the user quits; the exit code."""
    return asyncio.run(run_console_async(MiglabApp(backend, theme=theme)))


async def run_console_async(app: MiglabApp, **options: Any) -> int:
    """Run ``app`` (``options`` as for ``App.run_async``), then close its backend.

    Quitting closes it already; this is for an app that crashed (its log then ends
    "crashed", written before the process exits) or was stopped some other way.
    """
    try:
        await app.run_async(**options)
    finally:
        await app.backend.close()
    return app.return_code or 0
