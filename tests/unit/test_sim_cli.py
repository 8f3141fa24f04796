"""`miglab sim serve`: its arguments and its refusals (the serving itself: tests/integration)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from backend.sim.study import STUDY_LAB_TOML
from tui.commands import sim
from tui.commands.common import BadInput


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    sim.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sim", *argv])


def test_serve_takes_speed_lab_seed_and_ready() -> None:
    args = parse("serve", "--speed", "50", "--lab", "x.toml", "--seed", "3", "--ready")
    assert (args.speed, args.lab, args.seed, args.ready) == (50.0, "x.toml", 3, True)
    assert args.handler is sim.run_serve
    assert parse("serve").speed == 1.0


@pytest.mark.parametrize("speed", ["0", "-2", "fast", "5000"])
def test_a_bad_speed_is_a_usage_error(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse("serve", "--speed", speed)
    assert exit.value.code == 2
    assert "speed" in capsys.readouterr().err


def test_a_lab_file_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        sim.run_serve(parse("serve", "--lab", str(tmp_path / "nope.toml")))


def test_a_lab_the_simulation_cannot_play_is_bad_input(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(STUDY_LAB_TOML.replace('host = "iSCSIserver"', 'host = "xenserver1"'))
    with pytest.raises(BadInput, match="storage node apart"):
        sim.run_serve(parse("serve", "--lab", str(lab)))
