"""`miglab [--lab F] [--readonly]`: the console on a lab.

The console drives a lab through a :class:`~tui.backend_api.ConsoleBackend`. The
live one (the LabController adapter) is built by :func:`live_backend`, which the
CLI's bare ``miglab`` and the ``console`` subcommand share.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from backend.config import LabConfig
from tui.backend_api import ConsoleBackend
from tui.commands.common import DEFAULT_LAB, EXIT_FAILED, BadInput, load

# The module holding the LabController adapter: ``make_backend(lab, readonly=...)``.
LIVE_BACKEND_MODULE = "tui.live_backend"


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
        help="open the console on a lab (what a bare `miglab` does)",
        description="Open the console on the lab in lab.toml: every host at a glance, live "
        "traces, the command log; p prepares storage, b boots, m migrates, ? lists every key.",
    )
    add_arguments(console)
    console.set_defaults(handler=run)


def live_backend(lab: LabConfig, *, readonly: bool) -> ConsoleBackend:
    try:
        module = importlib.import_module(LIVE_BACKEND_MODULE)
    except ModuleNotFoundError as error:
        if error.name != LIVE_BACKEND_MODULE:  # the adapter exists but a module it needs does not
            raise
        raise RuntimeError(
            "the live console is not available in this build (no LabController adapter)"
        ) from None
    backend: ConsoleBackend = module.make_backend(lab, readonly=readonly)
    return backend


def run(args: argparse.Namespace) -> int:
    from tui.app import ThemeFileError, run_console

    lab = load(args.lab)
    try:
        backend = live_backend(lab, readonly=args.readonly)
    except RuntimeError as error:
        print(f"miglab: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return run_console(backend, theme=args.theme)
    except ThemeFileError as error:
        raise BadInput(str(error)) from None
