"""Imported ping lines that carry no time of their own (BusyBox ping, iputils without -D)
become samples with no time, in their order with their seq: never the run's start time
nor a time made up from an interval the output does not state."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backend.events import Sample
from backend.experiments.report import load_report, render
from backend.session import read_session
from tests.conftest import DATA
from tui.replay import ReplayBackend

ROOT = Path(__file__).resolve().parents[2]
PROBES = DATA / "probes"


def imported(tmp_path: Path, capture: str, kind: str = "ping") -> tuple[Path, str]:
    log = tmp_path / f"{capture}.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "import", kind, str(PROBES / capture), "-o", str(log),
         "--start", "1000"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return log, result.stdout


def samples(log: Path) -> list[Sample]:
    return [e for e in read_session(log).events if isinstance(e, Sample)]


@pytest.mark.parametrize(
    "capture",
    [
        "ping-busybox-netns-blackhole-c25-i0.2.txt",
        "ping-loopback-noD-c20-i0.2.txt",
        "ping-netns-late-addr-noO-c12-i0.5.txt",
    ],
)
def test_lines_without_a_timestamp_get_no_time(tmp_path: Path, capture: str) -> None:
    log, out = imported(tmp_path, capture)
    found = samples(log)
    assert found and all(s.t is None for s in found)  # not 1000 (--start), not 1000 + k * i
    readings = [s for s in found if "rtt_ms" in s.values]  # replies and losses
    seqs = [s.values["seq"] for s in readings]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # their order, their seq
    assert f"{len(found)} readings have no time" in out


def test_the_seqs_of_the_text_are_kept(tmp_path: Path) -> None:
    capture = "ping-loopback-noD-c20-i0.2.txt"
    text = (PROBES / capture).read_text()
    printed = [int(n) for n in re.findall(r"icmp_seq=(\d+) ", text)]
    log, _ = imported(tmp_path, capture)
    replies = [s for s in samples(log) if s.values.get("rtt_ms") is not None]
    assert [int(s.values["seq"] or 0) for s in replies] == printed == list(range(1, 21))


def test_lines_with_a_d_timestamp_keep_it(tmp_path: Path) -> None:
    capture = "ping-loopback-D-noO-c20-i0.2.txt"
    stamps = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\]", (PROBES / capture).read_text(),
                                           re.M)]  # fmt: skip
    log, out = imported(tmp_path, capture)
    replies = [s for s in samples(log) if s.values.get("rtt_ms") is not None]
    assert [s.t for s in replies] == stamps
    assert "have no time" not in out


def test_an_untimed_log_reports_and_its_csv_has_no_times(tmp_path: Path) -> None:
    log, _ = imported(tmp_path, "ping-busybox-loopback-c10-i0.2.txt")
    report = load_report(log)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) > 10 and all(row["t"] == "" and row["phase"] == "" for row in rows)
    text = render(report, "text")
    assert "no times in it" in text and "have no time" in text


def test_replay_of_an_untimed_log_does_not_fail(tmp_path: Path) -> None:
    log, _ = imported(tmp_path, "ping-busybox-loopback-c10-i0.2.txt")
    replay = ReplayBackend(read_session(log), speed=0)
    assert replay.empty  # no reading has a place on the replay's clock
    streamed = ReplayBackend.open(log, speed=0)
    assert streamed.empty
