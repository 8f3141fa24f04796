"""`miglab compare A B [...]`: runs side by side: mean, 95 % CI, change, overlap."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from backend.experiments.compare import (
    StatsUnavailable,
    compare,
    load_arm,
    render_json,
    render_text,
)
from backend.session import SessionLogError
from tui.commands import SUBCOMMANDS
from tui.commands.common import EXIT_OK, BadInput


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "compare",
        help=SUBCOMMANDS["compare"],
        description="Compare two or more ARMs, each a session log or a folder of them (a "
        "campaign's group: sessions/NAME/GROUP). Every repetition of every log of an arm "
        "is one value of each metric. Per metric and arm: n, mean, 95%% confidence interval "
        "(Student's t), change against the first arm, whether the intervals overlap, and "
        "Welch's t-test. Needs scipy (pip install 'miglab[stats]').",
    )
    parser.add_argument("arms", nargs="+", metavar="ARM", help="a session log or a folder")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--figures",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write bar charts with CI whiskers to DIR (PNG, SVG, PDF; needs "
        "matplotlib: pip install 'miglab[figures]')",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if len(args.arms) < 2:
        raise BadInput("compare needs two arms at least (logs or folders of logs)")
    try:
        arms = [load_arm(path) for path in args.arms]
        comparison = compare(arms)
    except (SessionLogError, FileNotFoundError, StatsUnavailable) as exc:
        raise BadInput(str(exc)) from None
    if args.format == "json":
        sys.stdout.write(render_json(comparison))
    else:
        sys.stdout.write(render_text(comparison))
    if args.figures is not None:
        from tui.commands.report import write_figures  # matplotlib: only on this path

        write_figures(lambda figures: figures.comparison_figures(comparison, args.figures))
    return EXIT_OK
