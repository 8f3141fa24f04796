"""`miglab scenarios`: the built-in scenarios, one line each; or check scenario files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from backend.experiments.scenarios import (
    QUICK_FACTOR,
    Scenario,
    builtin_scenarios,
    describe_timeline,
    find_scenario,
)
from backend.terminal_text import printable
from backend.tomlfile import ConfigError
from tui.commands import SUBCOMMANDS
from tui.commands.common import EXIT_OK, BadInput


def register(commands: Any) -> None:
    scenarios = commands.add_parser(
        "scenarios",
        help=SUBCOMMANDS["scenarios"],
        description="List the built-in scenarios, one per test of the 2009 study, one line "
        "each. Name built-in ids or scenario files (TOML) to show just those: a file is "
        "checked, and its errors name the line and key (exit 2).",
    )
    scenarios.add_argument(
        "names", nargs="*", metavar="ID|FILE", help="built-in ids or scenario files"
    )
    scenarios.add_argument("--json", action="store_true", help="print the scenarios as JSON")
    scenarios.add_argument(
        "--quick",
        action="store_true",
        help=f"show the timelines scaled as `--quick` runs them (x{QUICK_FACTOR:g})",
    )
    scenarios.add_argument(
        "--verbose", "-v", action="store_true", help="add each scenario's timeline and source"
    )
    scenarios.set_defaults(handler=run)


def _selected(names: list[str]) -> list[Scenario]:
    if not names:
        return list(builtin_scenarios().values())
    found: list[Scenario] = []
    problems: list[str] = []
    for name in names:
        try:
            found.append(find_scenario(name))
        except ConfigError as err:
            problems.extend(str(e) for e in err.errors)
    if problems:
        raise BadInput("\n".join(problems))
    return found


def run(args: argparse.Namespace) -> int:
    selected = _selected(args.names)
    if args.quick:
        selected = [scenario.quick() for scenario in selected]
    if args.json:
        dumped = [{**s.model_dump(mode="json"), "source": s.source} for s in selected]
        print(json.dumps(dumped, indent=2))
        return EXIT_OK
    # A scenario file is data: its id and title are shown, never run as terminal escapes.
    width = max(len(printable(s.id)) for s in selected)
    for scenario in selected:
        print(printable(f"{printable(scenario.id):<{width}}  {scenario.title}"))
        if args.verbose:
            study = f"{scenario.study_test}; " if scenario.study_test else ""
            timeline = describe_timeline(scenario.timeline, scenario.migrations)
            print(printable(f"{'':<{width}}  {study}{timeline}; from {scenario.source}"))
    return EXIT_OK
