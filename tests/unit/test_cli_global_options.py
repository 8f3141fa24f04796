"""Options before the command (`miglab --lab F check`) apply to it as after it does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def miglab(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


@pytest.mark.parametrize("before", [True, False], ids=["before check", "after check"])
def test_lab_checks_the_file_it_names_before_or_after_the_command(
    tmp_path: Path, before: bool
) -> None:
    # ./lab.toml is valid, FILE is not: checking ./lab.toml would wrongly say "valid".
    shutil.copy(ROOT / "lab.toml", tmp_path / "lab.toml")
    bad = tmp_path / "other.toml"
    bad.write_text((ROOT / "lab.toml").read_text().replace("vcpus = 2 ", "vcpus = 0 ", 1))
    argv = ["--lab", str(bad), "check"] if before else ["check", "--lab", str(bad)]
    done = miglab(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert str(bad) in done.stderr and "vcpus" in done.stderr
    assert "valid" not in done.stdout


def test_the_commands_own_option_wins_over_the_one_before_it(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    shutil.copy(ROOT / "lab.toml", good)
    done = miglab("--lab", str(tmp_path / "absent.toml"), "check", "--lab", str(good), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{good}: valid.")


def test_without_lab_check_reads_the_lab_toml_here(tmp_path: Path) -> None:
    shutil.copy(ROOT / "lab.toml", tmp_path / "lab.toml")
    done = miglab("check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lab.toml: valid.")


def test_an_option_the_command_does_not_take_is_refused_with_exit_2(tmp_path: Path) -> None:
    done = miglab("--lab", "x.toml", "report", "x.jsonl", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "miglab: --lab does not apply to `miglab report` (see `miglab report --help`)"
    )
    assert "Traceback" not in done.stderr
