"""`miglab results LOGS... -o FILE`: session logs as one tidy table (.csv, or .parquet)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from backend.experiments.results import (
    ParquetUnavailable,
    find_logs,
    result_rows,
    write_csv,
    write_parquet,
)
from backend.session import SessionLogError
from backend.terminal_text import printable
from tui.commands import SUBCOMMANDS
from tui.commands.common import EXIT_OK, BadInput

SUFFIXES = (".csv", ".parquet")


def register(commands: Any) -> None:
    results = commands.add_parser(
        "results",
        help=SUBCOMMANDS["results"],
        description="Write one tidy table of LOGS (session logs, or folders searched for "
        "*.jsonl): one row per run, repetition, migration and metric, with the run's "
        "parameters (scenario, lab, link speed, guest memory, hypervisor, seed, campaign "
        "group) as columns; readable as it is by pandas, DuckDB and R. .parquet needs "
        "DuckDB (pip install 'miglab[parquet]').",
    )
    results.add_argument("logs", nargs="+", metavar="LOG", help="a session log or a folder")
    results.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="the table to write: FILE.csv or FILE.parquet ('-' : csv on stdout)",
    )
    results.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.output
    to_stdout = str(out) == "-"
    if not to_stdout and out.suffix not in SUFFIXES:
        raise BadInput(f"{out}: write a .csv or a .parquet file")
    logs = find_logs(args.logs)
    if not logs:
        raise BadInput(f"no session logs (*.jsonl) in {', '.join(args.logs)}")
    missing = [str(log) for log in logs if not log.is_file()]
    if missing:
        raise BadInput(f"{missing[0]}: no such session log")
    rows = result_rows(logs)
    try:
        if to_stdout:
            count = write_csv(rows, sys.stdout)
        elif out.suffix == ".parquet":
            count = write_parquet(rows, out)
        else:
            with open(out, "w", encoding="utf-8", newline="") as file:
                count = write_csv(rows, file)
    except SessionLogError as exc:
        raise BadInput(str(exc)) from None
    except ParquetUnavailable as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{out}: cannot write: {exc.strerror or exc}") from None
    if not to_stdout:
        print(f"{count} rows from {len(logs)} logs in {printable(str(out))}", file=sys.stderr)
    return EXIT_OK
