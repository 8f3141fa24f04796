"""`miglab replay LOG [--speed N]`: replay a saved session in the console."""

from __future__ import annotations

import argparse
from typing import Any

from backend.session import SessionLogError
from tui.commands import SUBCOMMANDS, numbers
from tui.commands.common import EXIT_OK, BadInput

MAX_SPEED = 1000.0
_speed = numbers.float_range(0, MAX_SPEED, note=" (0: as fast as possible)")


def register(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help=SUBCOMMANDS["replay"],
        description="Replay a session log in the console, as it was seen: hosts, traces, "
        "migration, every command. Keys: space pauses, + and - change the speed, "
        "? lists every key. Nothing is run on any host.",
    )
    replay.add_argument("log", metavar="LOG", help="a session log (.jsonl) written by miglab")
    replay.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="N",
        help="session seconds per second, at most 1000 (default: %(default)s; 0: as fast as "
        "possible)",
    )
    replay.add_argument(
        "--theme", default=None, help="miglab-dark, miglab-light or miglab-high-contrast"
    )
    replay.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tui.app import ThemeFileError, run_console
    from tui.replay import ReplayBackend

    try:
        backend = ReplayBackend.open(args.log, speed=args.speed)
    except SessionLogError as error:
        raise BadInput(str(error)) from None
    if backend.empty:
        raise BadInput(f"{args.log}: the session log has no events to replay")
    try:
        code = run_console(backend, theme=args.theme)
    except ThemeFileError as error:
        raise BadInput(str(error)) from None
    return code or EXIT_OK
