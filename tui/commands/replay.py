"""`miglab replay LOG [--speed N]`: replay a saved session in the console."""

from __future__ import annotations

import argparse
import math
from typing import Any

from backend.session import SessionLogError
from tui.commands.common import EXIT_OK, BadInput


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError("the speed is a number >= 0 (0: as fast as possible)")
    return value


def register(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay a saved session log in the console",
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
        help="session seconds per second (default: %(default)s; 0: as fast as possible)",
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
