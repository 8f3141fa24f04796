"""`miglab import` says how many lines of a ping / dbench capture it did not understand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend.importer import ImportCounts, iter_probe
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = DATA / "probes"


def miglab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_iter_probe_counts_the_lines_the_parser_skipped() -> None:
    lines = (CAPTURES / "ping-old-iputils-icmp_req-moler.txt").read_text().splitlines()
    counts = ImportCounts()
    events = list(iter_probe("ping", lines, "storage", 1000.0, counts))
    assert len(events) == 8  # 5 replies, 3 losses
    assert counts.lines_not_understood == 1  # the shell prompt line


def test_import_reports_lines_not_understood(tmp_path: Path) -> None:
    capture = CAPTURES / "ping-old-iputils-icmp_req-moler.txt"
    log = tmp_path / "ping.jsonl"
    result = miglab("import", "ping", str(capture), "-o", str(log), "--start", "1000")
    assert result.returncode == 0, result.stderr
    assert f"{capture}: 1 line not understood (skipped)" in result.stdout
    assert log.exists()


def test_import_of_a_clean_dbench_capture_reports_nothing_skipped(tmp_path: Path) -> None:
    capture = CAPTURES / "dbench-s-t5-c2.txt"
    log = tmp_path / "dbench.jsonl"
    result = miglab("import", "dbench", str(capture), "-o", str(log), "--start", "1000")
    assert result.returncode == 0, result.stderr
    assert "not understood" not in result.stdout
    assert "events from" in result.stdout
