"""Every key of the console, in one registry.

The registry generates the main screen's ``BINDINGS`` (and so the footer), the
``?`` help screen and the command palette: a key added here shows up in all three,
and nothing lists keys anywhere else. Each binding has an id (``miglab.<action>``)
so users can remap keys through Textual's keymap.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Key:
    """One command: the key that runs it (if any) and how it is described."""

    action: str
    """The action it runs on the main screen (``app.<name>`` for app actions)."""

    key: str | None
    """The key; None for commands reached only through the palette."""

    label: str
    """Short, for the footer."""

    help: str
    """One line, for the help screen and the palette."""

    group: str = "lab"
    changes_host: bool = False
    """Disabled in a read-only console and in a replay."""

    confirm: bool = False
    """Destructive: asks first, in a dialog that shows the exact commands."""

    footer: bool = True
    binding: bool = True
    """False for keys a widget handles itself (listed for help, not bound here)."""

    key_display: str | None = None
    app_level: bool = False
    """Bound on the app with priority (works over every screen and dialog)."""

    @property
    def id(self) -> str:
        return "miglab." + self.action.removeprefix("app.")

    @property
    def shown_key(self) -> str:
        if self.key_display is not None:
            return self.key_display
        return self.key or ""


GROUPS = {
    "lab": "Lab (change hosts)",
    "view": "View",
    "replay": "Replay",
    "app": "Console",
}

KEYS: tuple[Key, ...] = (
    Key(
        "prepare",
        "p",
        "prepare",
        "Prepare storage: export the disk, log both hosts in",
        changes_host=True,
    ),
    Key("boot", "b", "boot", "Boot the guest (asks on which host)", changes_host=True),
    Key("migrate", "m", "migrate", "Live-migrate the guest to the other host", changes_host=True),
    Key("run_scenario", "r", "run", "Run a scenario (picker)", changes_host=True),
    Key(
        "cancel",
        "x",
        "cancel",
        "Cancel the running migration or scenario (asks first)",
        changes_host=True,
        confirm=True,
    ),
    Key(
        "shutdown_guest",
        "s",
        "shutdown",
        "Shut the guest down cleanly (asks first)",
        changes_host=True,
        confirm=True,
        footer=False,
    ),
    Key(
        "destroy_guest",
        "D",
        "destroy",
        "Destroy the guest at once, like pulling its power (asks first)",
        changes_host=True,
        confirm=True,
        footer=False,
        key_display="shift+d",
    ),
    Key(
        "logout",
        None,
        "log out",
        "Log a hypervisor host out of the shared disk (asks first)",
        changes_host=True,
        confirm=True,
        footer=False,
    ),
    Key(
        "unexport",
        None,
        "unexport",
        "Remove the disk's export from the storage node (asks first)",
        changes_host=True,
        confirm=True,
        footer=False,
    ),
    Key("toggle_log", "l", "log", "Show or hide the command log", group="view"),
    Key(
        "ping_interval",
        "i",
        "ping",
        "The console's own ping of the guest: every 0.1, 0.2, 0.5 or 1 s, or off (cycles)",
        group="view",
        footer=False,
    ),
    Key(
        "toggle_polls",
        "L",
        "polls",
        "Show or hide the routine polls (xl list, iscsiadm -m session...) in the command "
        "log; the session log keeps them all",
        group="view",
        footer=False,
        key_display="shift+l",
    ),
    Key(
        "show_output",
        "enter",
        "output",
        "In the command log: show the full output of the command",
        group="view",
        footer=False,
        binding=False,
    ),
    Key(
        "follow_log",
        "end",
        "follow",
        "In the command log: jump to the newest command and follow again",
        group="view",
        footer=False,
        binding=False,
    ),
    Key(
        "open_log", "o", "open", "Open a session log and replay it here", group="view", footer=False
    ),
    Key("help", "question_mark", "help", "Show this help", group="app", key_display="?"),
    Key(
        "app.command_palette",
        "ctrl+p",
        "palette",
        "Search every command (the command palette)",
        group="app",
        key_display="^p",
        app_level=True,
    ),
    Key("app.next_theme", "t", "theme", "Next theme (dark, light, high contrast)", group="app"),
    Key("app.quit", "q", "quit", "Quit (asks first if something is running)", group="app"),
    Key(
        "toggle_pause", "space", "pause", "Pause or resume the replay", group="replay", footer=False
    ),
    Key(
        "faster",
        "plus",
        "faster",
        "Replay twice as fast",
        group="replay",
        footer=False,
        key_display="+",
    ),
    Key(
        "slower",
        "minus",
        "slower",
        "Replay half as fast",
        group="replay",
        footer=False,
        key_display="-",
    ),
    Key(
        "close_replay",
        "escape",
        "back",
        "Close the replay, back to the live lab",
        group="replay",
        footer=False,
    ),
)

BY_ACTION: dict[str, Key] = {key.action: key for key in KEYS}


def _binding(key: Key, action: str, priority: bool = False) -> Binding:
    assert key.key is not None
    return Binding(
        key.key,
        action,
        key.label,
        show=key.footer,
        key_display=key.key_display,
        tooltip=key.help,
        id=key.id,
        priority=priority,
    )


def bindings() -> list[BindingType]:
    """The main screen's bindings, generated from :data:`KEYS`."""
    return [
        _binding(key, key.action)
        for key in KEYS
        if key.key is not None and key.binding and not key.app_level
    ]


def app_bindings() -> list[BindingType]:
    """The app's own bindings (the command palette), generated from :data:`KEYS`."""
    return [
        _binding(key, key.action.removeprefix("app."), priority=True)
        for key in KEYS
        if key.key is not None and key.binding and key.app_level
    ]


def by_group() -> dict[str, list[Key]]:
    """The keys in help-screen order: by group, in registry order within one."""
    grouped: dict[str, list[Key]] = {name: [] for name in GROUPS}
    for key in KEYS:
        grouped.setdefault(key.group, []).append(key)
    return grouped
