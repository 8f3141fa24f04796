"""`miglab [--lab F] [--readonly]`: the console's command (the live backend comes later)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.conftest import DATA
from tui.commands import console
from tui.commands.common import EXIT_FAILED, BadInput


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


def test_without_the_live_adapter_it_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "LIVE_BACKEND_MODULE", "tui.no_such_adapter")
    args = parse("--lab", str(DATA / "labs" / "good" / "everything.toml"))
    assert args.handler(args) == EXIT_FAILED
    assert "miglab: the live console is not available" in capsys.readouterr().err
