"""The `miglab` command line.

Exit codes: 0 ok, 1 the operation failed (a host said no or could not be
reached), 2 bad input (lab.toml, arguments, an unreadable log) with a short
message and no traceback, 141 the output's reader went away (as for SIGPIPE).
Each subcommand lives in tui/commands/.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from backend import __version__
from backend.terminal_text import printable
from tui.commands import SUBCOMMANDS, console, module_name
from tui.commands.common import EXIT_BAD_INPUT, BadInput

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a program killed by SIGPIPE
GLOBAL_OPTIONS = ("lab", "readonly", "theme")
GLOBAL_PREFIX = "global_"


def _top_parser(*, add_help: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miglab",
        description="A console for live-migration experiments on a Xen/QEMU + iSCSI lab.",
        add_help=add_help,
    )
    parser.add_argument("--version", action="version", version=f"miglab {__version__}")
    # A bare `miglab [--lab F]` opens the console; before a command they apply to it.
    console.add_arguments(parser, dest_prefix=GLOBAL_PREFIX)
    return parser


def _apply_global_options(args: argparse.Namespace) -> None:
    """Options given before the command (``miglab --lab F check``) apply to it as if
    given after it; the command's own wins when both are given. argparse alone lets the
    command's defaults overwrite them, and ./lab.toml was checked instead of F."""
    for name in GLOBAL_OPTIONS:
        value = getattr(args, GLOBAL_PREFIX + name)
        if args.command is None:  # the console
            setattr(args, name, value)
        elif value not in (None, False):
            if not hasattr(args, name):
                raise BadInput(
                    f"--{name} does not apply to `miglab {args.command}` "
                    f"(see `miglab {args.command} --help`)"
                )
            if getattr(args, name) in (None, False):
                setattr(args, name, value)


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` runs, as argparse itself reads it (None: the console)."""
    parser = _top_parser(add_help=False)
    parser.exit_on_error = False
    commands = parser.add_subparsers(dest="command")
    for name in SUBCOMMANDS:
        commands.add_parser(name, add_help=False)
    try:
        command: str | None = parser.parse_known_args(argv)[0].command
    except (argparse.ArgumentError, SystemExit):
        return None  # the full parser says what is wrong
    return command


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: every subcommand listed, and only the module of the one
    ``argv`` runs imported (None: all of them, as tests and the docs want)."""
    parser = _top_parser(add_help=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else _chosen(argv)
    for name, help_line in SUBCOMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"tui.commands.{module_name(name)}").register(commands)
        else:
            commands.add_parser(name, help=help_line)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="miglab: %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.ERROR)
    try:
        words = sys.argv[1:] if argv is None else list(argv)
        args = _parser(words).parse_args(words)  # --help prints here: inside the pipe guard
        _apply_global_options(args)
        handler = args.handler if args.command is not None else console.run
        code = handler(args)
    except BadInput as exc:
        # The message quotes files and hosts: shown, never run as terminal escapes.
        print(f"miglab: {printable(str(exc), keep_newlines=True)}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("miglab: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # The reader left (`miglab report LOG | head`): stop quietly, as cat does. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    sys.exit(code)


if __name__ == "__main__":
    main()
