"""Text from files and hosts never reaches the terminal as escapes (ESC, BEL, CSI, OSC)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backend.events import Note, Phase
from backend.experiments.headless import HeadlessPrinter
from backend.terminal_text import printable

ROOT = Path(__file__).resolve().parents[2]
TITLE = "\x1b]0;owned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
C1_CSI = "\x9b31m"  # the one-byte CSI
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")

pytestmark = pytest.mark.timeout(60)


def miglab(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=50,
    )


def no_raw_controls(text: str) -> None:
    found = RAW.findall(text)
    assert not found, f"raw control characters reach the terminal: {found!r}"


def test_printable_shows_every_control_character_as_a_visible_escape() -> None:
    assert printable(f"lab{TITLE}x") == "lab\\x1b]0;owned\\x07x"
    assert printable(f"a\nb{C1_CSI}\u202e") == "a\\x0ab\\x9b31m\\u202e"
    assert printable("a\nb\tc", keep_newlines=True) == "a\nb\\x09c"
    assert printable("plain ASCII, ünïcödé, 日本") == "plain ASCII, ünïcödé, 日本"


@pytest.fixture
def log_with_escapes(tmp_path: Path) -> Path:
    header = {
        "kind": "session.header",
        "t": 1000.0,
        "schema": 1,
        "scenario": f"scen{CLEAR}ario",
        "lab": {"lab": {"name": f"lab{TITLE}"}},
        "simulated": False,
    }
    host = f"h{C1_CSI}ost"
    lines = [header]
    for i in range(20):
        lines.append(
            {"kind": "sample", "t": 1001.0 + i, "probe": "ping", "host": host,
             "values": {"seq": i, "rtt_ms": 1.0}, "unit": {"rtt_ms": f"m{CLEAR}s"}}
        )  # fmt: skip
    lines.append({"kind": "note", "t": 1030.0, "level": "warning", "text": f"bad{TITLE}news"})
    lines.append({"kind": "session.end", "t": 1031.0, "status": "ok"})
    path = tmp_path / "escapes.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("fmt", ["text", "md", "csv", "json"])
def test_report_shows_names_from_the_log_as_text_not_escapes(
    log_with_escapes: Path, fmt: str
) -> None:
    result = miglab("report", "--format", fmt, "--color", "never", str(log_with_escapes))
    assert result.returncode == 0, result.stderr
    no_raw_controls(result.stdout)
    if fmt in ("text", "md"):
        assert "lab\\x1b]0;owned\\x07" in result.stdout
        assert "scen\\x1b[2Jario" in result.stdout
        assert "bad\\x1b]0;owned\\x07news" in result.stdout
    elif fmt == "csv":
        assert "m\\x1b[2Js" in result.stdout
    else:
        assert json.loads(result.stdout)["lab"] == f"lab{TITLE}"  # json escapes it itself


def test_scenarios_shows_a_files_title_as_text(tmp_path: Path) -> None:
    text = (ROOT / "backend/experiments/scenarios/migrate-ping.toml").read_text()
    text = text.replace(
        'title = "ping alone: is the guest ever unreachable?"',
        'title = "ping\\u001b]0;owned\\u0007 \\u001b[2J alone"',
    )
    path = tmp_path / "escapes.toml"
    path.write_text(text)
    result = miglab("scenarios", "--verbose", str(path))
    assert result.returncode == 0, result.stderr
    no_raw_controls(result.stdout)
    assert "ping\\x1b]0;owned\\x07 \\x1b[2J alone" in result.stdout


def test_a_bad_input_message_quoting_the_file_shows_escapes_as_text(tmp_path: Path) -> None:
    path = tmp_path / f"missing{CLEAR}.toml"
    result = miglab("scenarios", str(path))
    assert result.returncode == 2
    no_raw_controls(result.stderr.rstrip("\n"))
    assert "\\x1b[2J" in result.stderr


def test_check_shows_the_lab_name_as_text(tmp_path: Path) -> None:
    source = next((ROOT / "tests/data/labs/good").glob("*.toml"))
    text = source.read_text()
    lab = tmp_path / "lab.toml"
    lab.write_text(
        re.sub(r'(?m)^name = ".*"$', 'name = "lab\\\\u001b]0;owned\\\\u0007"', text, count=1)
    )
    result = miglab("check", "--lab", str(lab))
    assert result.returncode == 0, result.stderr
    no_raw_controls(result.stdout.rstrip("\n"))
    assert "\\x1b]0;owned\\x07" in result.stdout


def test_the_headless_printer_shows_notes_and_phases_as_text() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(Phase(t=1.0, name=f"base{CLEAR}line"))
    printer(Note(t=2.0, level="error", text=f"host said {TITLE}"))
    no_raw_controls(out.getvalue().replace("\n", ""))
    assert "base\\x1b[2Jline" in out.getvalue() and "host said \\x1b]0;owned\\x07" in out.getvalue()
