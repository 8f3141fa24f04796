"""`miglab report LOG`: the metrics and plots of a saved session log."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from backend.experiments.report import FORMATS, load_report, render, write_csv
from backend.session import SessionLogError
from backend.terminal_text import printable
from tui.commands import SUBCOMMANDS
from tui.commands.common import EXIT_OK, BadInput


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help=SUBCOMMANDS["report"],
        description="Report on a session log: per migration its total time, downtime, "
        "unreachable time and losses; per probe its means before, during and after the "
        "migration and the change; across repetitions mean, std and 95%% CI. text: tables and "
        "plots; md: Markdown tables; csv: one row per reading value; json: one object.",
    )
    report.add_argument("log", metavar="LOG", help="a session log (JSON Lines)")
    report.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: %(default)s)"
    )
    report.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colours in the text plots (auto: on a terminal, unless NO_COLOR is set)",
    )
    report.add_argument(
        "--figures",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write each probe's trace, the migration shaded, to DIR as PNG, SVG and "
        "PDF for a paper (needs matplotlib: pip install 'miglab[figures]')",
    )
    report.set_defaults(handler=run)


def use_colors(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def run(args: argparse.Namespace) -> int:
    try:
        report = load_report(args.log)
    except SessionLogError as exc:
        raise BadInput(str(exc)) from None
    except ValidationError as exc:
        # The reader lets an event whose "t" is not a number through (reported to the lead).
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        raise BadInput(f"{args.log}: an event does not validate: {where}: {first['msg']}") from None
    for warning in report.warnings:
        print(printable(f"miglab: warning: {args.log}: {warning}"), file=sys.stderr)
    if args.format == "csv":  # a row per reading: written as it is read, not held
        write_csv(report, sys.stdout)
    else:
        sys.stdout.write(render(report, args.format, colors=use_colors(args.color)))
    if args.figures is not None:
        write_figures(lambda figures: figures.report_figures(report, args.figures))
    return EXIT_OK


def write_figures(make: Callable[[ModuleType], list[Path]]) -> None:
    """Run ``make(backend.experiments.figures)``; only this path imports matplotlib."""
    from backend.experiments import figures

    try:
        written = make(figures)
    except figures.FiguresUnavailable as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"cannot write the figures: {exc}") from None
    folders = sorted({str(path.parent) for path in written})
    print(
        printable(f"miglab: {len(written)} figure files in {', '.join(folders)}"), file=sys.stderr
    )
