"""`miglab [--lab F] [--readonly]`: the console on a lab.

The console drives a lab through a :class:`~tui.backend_api.ConsoleBackend`; the
live one is :func:`tui.live_backend.make_backend`'s, imported when the console
opens (not for ``--help``). The CLI's bare ``miglab`` and the ``console``
subcommand share this module.
"""

from __future__ import annotations

import argparse
from typing import Any

from tui.commands import SUBCOMMANDS
from tui.commands.common import DEFAULT_LAB, BadInput, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The console's options, for the subcommand and for bare ``miglab``."""
    parser.add_argument("--lab", default=DEFAULT_LAB, help="the lab file (default: %(default)s)")
    parser.add_argument(
        "--readonly",
        action="store_true",
        help="watch only: every action that changes a host is disabled",
    )
    parser.add_argument(
        "--theme", default=None, help="miglab-dark, miglab-light or miglab-high-contrast"
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
    from tui.live_backend import make_backend

    lab = load(args.lab)
    backend = make_backend(lab, readonly=args.readonly)
    try:
        return run_console(backend, theme=args.theme)
    except ThemeFileError as error:
        raise BadInput(str(error)) from None
