"""`miglab` imports only the subcommand it runs: `--help` pays for none of them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tui import cli
from tui.commands import SUBCOMMANDS, module_name

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("asyncio", "asyncssh", "pydantic", "plotext", "textual")


def imported_after(code: str) -> list[str]:
    """The subcommands' modules and the heavy libraries a fresh interpreter has after
    ``code``."""
    probe = (
        "import sys\n"
        f"{code}\n"
        f"heavy = {HEAVY!r}\n"
        f"subcommands = {sorted(f'tui.commands.{module_name(n)}' for n in SUBCOMMANDS)!r}\n"
        "mods = [m for m in sys.modules if m in subcommands or m in heavy]\n"
        "print(' '.join(sorted(mods)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout.split()


def test_help_lists_every_subcommand_and_imports_none_of_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    listed = " ".join(done.stdout.split())  # argparse wraps the lines to the terminal
    for name, line in SUBCOMMANDS.items():
        assert f" {name} {line.replace('%%', '%')}" in listed
    code = "import tui.cli\ntui.cli._parser(['--help'])"
    assert imported_after(code) == ["tui.commands.console"]


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["report", "x.jsonl"], "tui.commands.report"),
        (["--lab", "run.toml", "--readonly", "import", "ping", "f"], "tui.commands.importer"),
        (["scenarios"], "tui.commands.scenarios"),
    ],
)
def test_a_subcommand_imports_its_own_module_only(argv: list[str], module: str) -> None:
    mods = imported_after(f"import tui.cli\ntui.cli._parser({argv!r})")
    assert [m for m in mods if m.startswith("tui.")] == sorted({module, "tui.commands.console"})


def test_an_option_value_that_names_a_subcommand_is_not_one() -> None:
    # `--lab run` names a lab file called "run": a bare `miglab`, the console.
    assert cli._chosen(["--lab", "run"]) is None
    assert cli._chosen(["--readonly", "demo", "--speed", "5"]) == "demo"
    assert cli._chosen(["--lab"]) is None  # the full parser reports the missing value


def test_each_module_registers_its_name_with_the_tables_help() -> None:
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(commands.choices) == list(SUBCOMMANDS)
    helps = {action.dest: action.help for action in commands._choices_actions}
    assert helps == SUBCOMMANDS
