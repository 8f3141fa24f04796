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
from tui.commands import console
from tui.commands.common import EXIT_BAD_INPUT, BadInput

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a program killed by SIGPIPE

# Subcommands, in the order `miglab --help` lists them.
COMMANDS = (
    "console",
    "demo",
    "check",
    "run",
    "campaign",
    "report",
    "results",
    "compare",
    "replay",
    "import",
    "scenarios",
    "sandbox",
    "sim",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miglab",
        description="A console for live-migration experiments on a Xen/QEMU + iSCSI lab.",
    )
    parser.add_argument("--version", action="version", version=f"miglab {__version__}")
    console.add_arguments(parser)  # a bare `miglab [--lab F]` opens the console
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = "importer" if name == "import" else name  # `import` is a Python keyword
        importlib.import_module(f"tui.commands.{module}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="miglab: %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.ERROR)
    try:
        args = _parser().parse_args(argv)  # --help prints here: inside the pipe guard
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
