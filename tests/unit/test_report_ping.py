"""`miglab report` of a ping log: sent, received, lost (count and %), the longest silence
(its duration and when, or its seqs when the readings have no time) and the RTT of the
replies (median, min, p95), over the whole log and per migration window; the figures
are checked against what the captures' own text states."""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.experiments.report import build_report, load_report, render
from backend.session import read_session
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
PROBES = DATA / "probes"
REAL_SESSION = DATA / "sessions" / "real-ping-sysbench-loopback.jsonl"


def report_of(tmp_path: Path, capture: str) -> tuple[Path, dict[str, Any]]:
    log = tmp_path / f"{capture}.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "import", "auto", str(PROBES / capture), "-o",
         str(log), "--start", "1000"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return log, json.loads(render(load_report(log), "json"))


def rtts_printed(capture: str) -> list[float]:
    return sorted(
        float(x) for x in re.findall(r" time=([\d.]+) ms", (PROBES / capture).read_text())
    )


def totals_printed(capture: str) -> tuple[int, int, float]:
    text = (PROBES / capture).read_text()
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received.*?([\d.]+)% packet loss",
                  text)  # fmt: skip
    assert m is not None
    return int(m[1]), int(m[2]), float(m[3])


@pytest.mark.parametrize(
    ("capture", "first", "last", "to_end"),
    [
        # README: the blackhole route dropped seqs 8-14 (BusyBox counts from 0)
        ("ping-busybox-netns-blackhole-c25-i0.2.txt", 8, 14, False),
        # the route kept to the end: replies 0-5, then nothing
        ("ping-busybox-netns-blackhole-tail-c10-i0.2.txt", 6, 9, True),
        # iputils without -D: "Destination Host Unreachable" for 1-6, replies from 7
        ("ping-netns-late-addr-noO-c12-i0.5.txt", 1, 6, False),
    ],
)
def test_untimed_ping_is_reported_in_probes_and_seqs(
    tmp_path: Path, capture: str, first: int, last: int, to_end: bool
) -> None:
    _, report = report_of(tmp_path, capture)
    (ping,) = report["pings"].values()
    assert ping["timed"] is False and ping["migrations"] == []
    whole = ping["whole"]
    sent, received, loss_pct = totals_printed(capture)
    assert (whole["sent"], whole["received"]) == (sent, received)
    assert whole["lost"] == sent - received and whole["lost_pct"] == pytest.approx(loss_pct, 0.01)
    silence = whole["longest_silence"]
    assert (silence["first_seq"], silence["last_seq"]) == (first, last)
    assert silence["lost"] == last - first + 1 and silence["to_end"] is to_end
    assert silence["duration_s"] is None and silence["started_at"] is None  # no time: none made up
    printed = rtts_printed(capture)
    rtt = whole["rtt_ms"]
    assert rtt["min"] == printed[0] and rtt["median"] == pytest.approx(statistics.median(printed))
    assert rtt["p95"] == printed[math.ceil(0.95 * len(printed)) - 1]  # nearest rank: printed


def test_timed_ping_gives_the_silence_its_duration_and_time(tmp_path: Path) -> None:
    capture = "ping-netns-blackhole-c25-i0.2.txt"
    log, report = report_of(tmp_path, capture)
    whole = report["pings"]["console"]["whole"]
    assert (whole["sent"], whole["received"], whole["lost"]) == (25, 18, 7)
    text = (PROBES / capture).read_text()
    replies = re.findall(r"^\[(\d+\.\d+)\] 64 bytes from \S+ icmp_seq=(\d+) ", text, re.M)
    stamp = {int(seq): float(t) for t, seq in replies}
    silence = whole["longest_silence"]
    assert (silence["first_seq"], silence["last_seq"]) == (9, 15)  # the README's blackhole
    assert silence["duration_s"] == pytest.approx(stamp[16] - stamp[8], abs=1e-6)
    t0 = read_session(log).header["t"]
    assert silence["started_at"] == pytest.approx(stamp[8] - t0, abs=1e-6)
    rendered = render(load_report(log), "text")
    row = next(line for line in rendered.splitlines() if line.startswith("whole log"))
    assert row.split()[:8] == ["whole", "log", "25", "18", "7", "28.0%", "1.63", "1.4"]
    assert all(len(line) <= 80 for line in rendered.splitlines())


def test_a_ping_with_nothing_lost_says_so(tmp_path: Path) -> None:
    _, report = report_of(tmp_path, "ping-loopback-noD-c20-i0.2.txt")
    whole = report["pings"]["console"]["whole"]
    assert (whole["sent"], whole["received"], whole["lost"]) == (20, 20, 0)
    assert whole["longest_silence"] is None and whole["lost_pct"] == 0.0


def test_a_console_session_gives_the_figures_per_migration_window() -> None:
    report = load_report(REAL_SESSION)
    data = json.loads(render(report, "json"))
    (migration,) = data["migrations"]
    (window,) = data["pings"]["console"]["migrations"]
    # the same silence the migration table calls unreachable, the same probes lost
    assert window["longest_silence"]["duration_s"] == pytest.approx(migration["unreachable_s"])
    assert window["lost"] == migration["lost_probes"] == 11
    whole = data["pings"]["console"]["whole"]
    assert whole["sent"] >= window["sent"] > window["lost"] > 0
    assert whole["received"] + whole["lost"] == whole["sent"]
    text = render(report, "text")
    assert "whole log" in text and "migration 1" in text


def test_streamed_and_loaded_reports_of_an_untimed_log_agree(tmp_path: Path) -> None:
    log, _ = report_of(tmp_path, "ping-busybox-netns-blackhole-c25-i0.2.txt")
    for fmt in ("json", "text", "md", "csv"):
        assert render(load_report(log), fmt) == render(build_report(read_session(log)), fmt)
