"""`miglab import`: hand-captured tool output becomes a session log that reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.events import MigrationFinished, MigrationProgress, Sample
from backend.session import read_session
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]


def miglab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def imported(tmp_path: Path, kind: str, capture: Path, *extra: str) -> Path:
    log = tmp_path / f"{kind}.jsonl"
    result = miglab("import", kind, str(capture), "-o", str(log), "--start", "1000", *extra)
    assert result.returncode == 0, result.stderr
    return log


def test_ping_capture_keeps_replies_losses_and_its_own_timestamps(tmp_path: Path) -> None:
    capture = DATA / "probes" / "ping-netns-blackhole-c25-i0.2.txt"
    session = read_session(imported(tmp_path, "ping", capture, "--host", "storage"))
    samples = [e for e in session.events if isinstance(e, Sample)]
    lost = [s.values["seq"] for s in samples if s.values.get("lost")]
    assert lost == list(range(9, 16))  # the blackhole the capture's README describes
    assert all(s.host == "storage" for s in samples)
    assert samples[0].t > 1.7e9  # ping -D's own clock, not --start
    assert not session.cut_short


def test_sysbench_kind_is_told_from_the_output(tmp_path: Path) -> None:
    capture = DATA / "probes" / "sysbench-cpu-t2-time5-report1.txt"
    session = read_session(imported(tmp_path, "sysbench", capture))
    samples = [e for e in session.events if isinstance(e, Sample)]
    assert {s.probe for s in samples} == {"sysbench-cpu"}
    assert samples[0].t >= 1000 and any("eps" in s.values for s in samples)


def test_qemu_query_migrate_dump_keeps_qemus_own_numbers(tmp_path: Path) -> None:
    log = imported(tmp_path, "qemu", DATA / "qmp" / "source.jsonl", "--from", "h1", "--to", "h2")
    session = read_session(log)
    progress = [e for e in session.events if isinstance(e, MigrationProgress)]
    finished = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert len(progress) > 10 and len(finished) == 1
    transferred = [p.transferred_bytes or 0 for p in progress]
    assert transferred == sorted(transferred)
    done = finished[0]
    assert done.ok and done.source == "h1" and done.dest == "h2"
    assert done.total_time_ms == pytest.approx(7515, abs=1) and done.downtime_ms == 6
    report = json.loads(miglab("report", str(log), "--format", "json").stdout)
    migration = report["migrations"][0]
    assert migration["total_s"] == pytest.approx(7.515) and migration["downtime_ms"] == 6
    assert migration["started_at"] >= 0


@pytest.mark.parametrize(
    ("capture", "ok"),
    [("xl-migrate-v2-4.17-verbose.txt", True), ("xl-migrate-v2-4.17-target-failure.txt", False)],
)
def test_xl_migrate_output_becomes_a_migration(tmp_path: Path, capture: str, ok: bool) -> None:
    session = read_session(imported(tmp_path, "xl", DATA / "xl" / capture))
    finished = [e for e in session.events if isinstance(e, MigrationFinished)]
    assert len(finished) == 1 and finished[0].ok is ok
    assert finished[0].downtime_ms is None  # xl does not report it: never invented
    assert (finished[0].error is None) is ok


def test_wrong_kind_and_missing_file_exit_2(tmp_path: Path) -> None:
    wrong = miglab("import", "dbench", str(DATA / "xl" / "xl-info-4.17.txt"), "-o",
                   str(tmp_path / "x.jsonl"))  # fmt: skip
    assert wrong.returncode == 2 and "not dbench output" in wrong.stderr
    assert "Traceback" not in wrong.stderr and not (tmp_path / "x.jsonl").exists()
    missing = miglab("import", "ping", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "y"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
