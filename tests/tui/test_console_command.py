"""`miglab [--lab F] [--readonly]`: the console's command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tui.commands import console
from tui.commands.common import BadInput


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    console.register(parser.add_subparsers())
    return parser.parse_args(["console", *argv])


def test_options() -> None:
    args = parse("--lab", "x.toml", "--readonly", "--theme", "miglab-light")
    assert (args.lab, args.readonly, args.theme) == ("x.toml", True, "miglab-light")


def test_a_bad_lab_is_bad_input(tmp_path: Path) -> None:
    args = parse("--lab", str(tmp_path / "missing.toml"))
    with pytest.raises(BadInput, match="no such file"):
        args.handler(args)
