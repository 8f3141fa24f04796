"""`miglab [--lab F] [--readonly]`: the console on a lab.

The console drives a lab through a :class:`~tui.backend_api.ConsoleBackend`; the
live one is :func:`tui.live_backend.make_backend`'s, made once the console has drawn
its first frame (:mod:`tui.deferred_backend`). The CLI's bare ``miglab`` and the
``console`` subcommand share this module.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.commands import SUBCOMMANDS
from tui.commands.common import DEFAULT_LAB, BadInput, load

if TYPE_CHECKING:
    from backend.config import LabConfig
    from tui.deferred_backend import DeferredBackend


def add_arguments(parser: argparse.ArgumentParser, *, dest_prefix: str = "") -> None:
    """The console's options, for the subcommand and (``dest_prefix="global_"``) for the
    top parser, where they also apply to the command after them (tui/cli.py)."""
    parser.add_argument(
        "--lab", dest=f"{dest_prefix}lab", help=f"the lab file (default: {DEFAULT_LAB})"
    )
    parser.add_argument(
        "--readonly",
        dest=f"{dest_prefix}readonly",
        action="store_true",
        help="watch only: every action that changes a host is disabled",
    )
    parser.add_argument(
        "--theme",
        dest=f"{dest_prefix}theme",
        help="miglab-dark, miglab-light or miglab-high-contrast",
    )


def register(commands: Any) -> None:
    console = commands.add_parser(
        "console",
        help=SUBCOMMANDS["console"],
        description="Open the console on the lab in lab.toml: every host at a glance, live "
        "traces, the command log; p prepares storage, b boots, m migrates, ? lists every key.",
    )
    add_arguments(console)
    console.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tui.app import ThemeFileError, run_console

    backend = console_backend(load(args.lab or DEFAULT_LAB), readonly=bool(args.readonly))
    try:
        return run_console(backend, theme=args.theme)
    except ThemeFileError as error:
        raise BadInput(str(error)) from None


def console_backend(
    lab: LabConfig, *, readonly: bool, log_dir: Path | None = None
) -> DeferredBackend:
    """The console's backend on ``lab``: the live one, made after the first frame.
    ``log_dir``: where the session log goes (default: the live backend's)."""
    from tui.backend_api import ConsoleBackend, LabLayout
    from tui.deferred_backend import DeferredBackend, make_live_backend

    async def make(session_start: float, _cleanup: contextlib.AsyncExitStack) -> ConsoleBackend:
        # The SSH stack and the drivers load after the first frame.
        return await make_live_backend(
            lab, readonly=readonly, session_start=session_start, log_dir=log_dir
        )

    layout = LabLayout.from_config(lab)
    return DeferredBackend(layout, make, simulated=False, readonly=readonly)
