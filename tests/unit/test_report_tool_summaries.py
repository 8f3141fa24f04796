"""A run that has only the tool's end-of-run summary (sysbench imported from a terminal)
reports what the tool printed, with the values its text states: before, the report of
such a log was its title and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# sysbench 0.4.12, run here (tests/data/probes/README.md)
CAPTURE = ROOT / "tests/data/probes/sysbench-cpu-v0.4.12-prime20000-t1-2000req.txt"


def miglab(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_an_imported_sysbench_summary_is_reported_as_printed(tmp_path: Path) -> None:
    log = tmp_path / "sb.jsonl"
    assert miglab("import", "sysbench", str(CAPTURE), "-o", str(log)).returncode == 0
    text = miglab("report", str(log)).stdout
    assert "sysbench-cpu on console: what it printed at its end" in text, text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["total_time_s"] == ["1.6205", "s"]
    assert rows["total_events"] == ["2000"]
    assert rows["lat_min_ms"] == ["0.58", "ms"]
    assert rows["lat_avg_ms"] == ["0.81", "ms"]
    assert rows["lat_max_ms"] == ["20.65", "ms"]
    assert rows["lat_pct_ms"] == ["1.94", "ms"]

    data = json.loads(miglab("report", str(log), "--format", "json").stdout)
    [summary] = data["tool_summaries"]
    assert summary["probe"] == "sysbench-cpu" and summary["host"] == "console"
    assert summary["values"]["total_time_s"] == 1.6205
    assert summary["values"]["lat_pct_ms"] == 1.94


def test_a_quiet_ping_is_reported_by_its_own_totals(tmp_path: Path) -> None:
    # `ping -q` prints no reading at all: its summary is everything there is to report
    capture = ROOT / "tests/data/probes/ping-q-loopback-c5-i0.2.txt"
    log = tmp_path / "ping.jsonl"
    assert miglab("import", "auto", str(capture), "-o", str(log)).returncode == 0
    text = miglab("report", str(log)).stdout
    assert "ping on console: what it printed at its end" in text, text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["transmitted"] == ["5"] and rows["received"] == ["5"]
    assert rows["rtt_min_ms"] == ["0.032", "ms"] and rows["rtt_max_ms"] == ["0.043", "ms"]
    assert rows["time_ms"] == ["814", "ms"]
