"""`miglab report`: every format on hand-built logs and on a log of real probe output."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from backend.events import DiskStarted, Event, Phase, RepetitionStarted, Sample
from backend.experiments.plots import SHADE, probe_plot
from backend.experiments.report import CSV_HEADER, load_report, render
from backend.session import SessionLogWriter, make_header, read_session
from tests.conftest import DATA
from tests.unit.test_metrics import T0, dbench, in_order, one_migration, study_run
from tui.commands import report as report_command
from tui.commands.common import BadInput

REAL = DATA / "sessions" / "real-ping-sysbench-loopback.jsonl"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


async def write_log(
    path: Path, events: Sequence[Event], *, scenario: str = "migrate-combined", end: bool = True
) -> Path:
    header = make_header(lab={"lab": {"name": "ufla-2009"}}, scenario=scenario, simulated=True)
    header["t"] = T0
    writer = await SessionLogWriter.create(path, header)
    for event in events:
        writer.write(event)
    await writer.close()
    if not end:  # a crash: no end marker, and half a line
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]) + lines[-2][:20])
    return path


@pytest.fixture
async def study_log(tmp_path: Path) -> Path:
    return await write_log(tmp_path / "study.jsonl", study_run())


# --------------------------------------------------------------------------- json


MIGRATION_KEYS = {
    "from", "to", "started_at", "total_s", "downtime_ms", "unreachable_s", "lost_probes",
    "bytes_sent", "iterations",
}  # fmt: skip
PROBE_KEYS = {"unit", "baseline", "during", "after", "during_change_pct", "worst_change_pct"}


def test_json_has_the_agreed_shape(study_log: Path) -> None:
    data = json.loads(render(load_report(study_log), "json"))
    assert set(data) == {
        "scenario", "lab", "simulated", "cut_short", "migrations", "probes", "repetitions",
        "disk_comparison", "pings", "tool_summaries", "skipped_lines", "warnings",
    }  # fmt: skip
    assert (data["scenario"], data["lab"], data["simulated"]) == (
        "migrate-combined",
        "ufla-2009",
        True,
    )
    assert data["cut_short"] is False and data["disk_comparison"] is None
    (migration,) = data["migrations"]
    assert set(migration) == MIGRATION_KEYS
    assert migration["from"] == "xen1" and migration["to"] == "xen2"
    assert migration["started_at"] == pytest.approx(40.0)  # seconds since the session started
    assert migration["unreachable_s"] == pytest.approx(3.2) and migration["lost_probes"] == 15
    assert migration["downtime_ms"] is None  # unknown stays null
    assert set(data["probes"]) == {
        "ping.rtt_ms", "sysbench-cpu.eps", "dbench.mb_per_s_1s", "dbench.latency_ms",
    }  # fmt: skip
    cpu = data["probes"]["sysbench-cpu.eps"]
    assert set(cpu) == PROBE_KEYS and cpu["unit"] == "events/s"
    assert cpu["during_change_pct"] == pytest.approx(-10.5)
    assert cpu["worst_change_pct"] == pytest.approx(-20.0)
    repetitions = data["repetitions"]
    assert repetitions["count"] == 1 and repetitions["runs"][0]["number"] == 1
    assert repetitions["summary"]["migration1.total_s"] == {
        "n": 1, "mean": 20.0, "std": None, "ci95": None,
    }  # fmt: skip


async def test_json_repetitions_carry_the_interval(tmp_path: Path) -> None:
    events: list[Event] = []
    for number, total in enumerate((10.0, 12.0, 14.0), start=1):
        t0 = T0 + 100 * number
        events += [RepetitionStarted(number=number, of=3, t=t0), Phase(name="baseline", t=t0)]
        events += one_migration(t0 + 10, t0 + 20, total_ms=total * 1000)
    log = await write_log(tmp_path / "r.jsonl", in_order(events))
    report = load_report(log)
    summary = json.loads(render(report, "json"))["repetitions"]["summary"]["migration1.total_s"]
    assert summary["n"] == 3 and summary["mean"] == 12.0 and summary["std"] == 2.0
    assert summary["ci95"] == pytest.approx([12 - 4.968275, 12 + 4.968275], abs=1e-5)
    text = render(report, "text")
    assert "Across 3 repetitions" in text and "7.03 .. 16.97" in text


# --------------------------------------------------------------------------- csv


def test_csv_has_one_row_per_reading_value(study_log: Path) -> None:
    report = load_report(study_log)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert tuple(rows[0]) == CSV_HEADER
    events = read_session(study_log).events
    samples = [e for e in events if isinstance(e, Sample) and "summary" not in e.values]
    assert len(rows) == sum(len(s.values) for s in samples)
    times = [float(r["t"]) for r in rows]
    assert times == sorted(times) and 0 <= times[0] < 1
    lost = [r for r in rows if r["probe"] == "ping" and r["metric"] == "lost"]
    assert len(lost) == 16 and {r["phase"] for r in lost} == {"warmup", "migrating"}
    rtt = next(r for r in rows if r["metric"] == "rtt_ms" and r["value"] == "")
    assert rtt["unit"] == "ms"  # a lost reply: its rtt is empty, not 0
    eps = [r for r in rows if r["metric"] == "eps"]
    assert {r["phase"] for r in eps} == {"warmup", "baseline", "migrating", "after"}
    assert float(next(r for r in eps if r["phase"] == "baseline")["value"]) == 100.0


# --------------------------------------------------------------------------- md


def md_tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif current:
            tables.append(current)
            current = []
    return tables


def test_markdown_renders_github_tables(study_log: Path) -> None:
    text = render(load_report(study_log), "md")
    assert text.startswith("# miglab report: migrate-combined (test 5): ")
    tables = md_tables(text)
    assert len(tables) == 3  # migrations, probes, ping
    for table in tables:
        assert len({len(row) for row in table}) == 1  # every row has every column
        assert all(re.fullmatch(r"-{3}:?", cell) for cell in table[1])
    migrations, probes, _ping = tables
    assert migrations[0][:3] == ["#", "from", "to"] and migrations[2][:3] == ["1", "xen1", "xen2"]
    cpu = next(row for row in probes if row[0] == "cpu (sysbench)")
    assert cpu[2:] == ["100.0", "89.50", "100.0", "-10.5%", "-20.0%"]
    assert "## The study (test 5)" in text and "never unreachable" in text


# --------------------------------------------------------------------------- text


def test_text_fits_80_columns_and_plots_every_probe(study_log: Path) -> None:
    text = render(load_report(study_log), "text")
    assert not ANSI.search(text)
    assert max(len(line) for line in text.splitlines()) <= 80
    for title in ("network (ping rtt), ms", "cpu (sysbench), events/s", "disk latency (dbench)"):
        assert f"{title}" in text
    assert text.count(f"{SHADE} migrating") == 4  # one plot per series, each shaded
    assert "3.20" in text and "-20.0%" in text


def test_text_with_colours_carries_ansi(study_log: Path) -> None:
    text = render(load_report(study_log), "text", colors=True)
    assert ANSI.search(text)
    assert max(len(ANSI.sub("", line)) for line in text.splitlines()) <= 80


# --------------------------------------------------------------------------- cut short


async def test_a_cut_log_reports_what_it_holds(tmp_path: Path) -> None:
    events = [e for e in study_run() if e.t < T0 + 50]  # the crash came mid-migration
    log = await write_log(tmp_path / "cut.jsonl", events, end=False)
    report = load_report(log)
    assert report.cut_short
    assert "Cut short" in render(report, "text") and "**Cut short:**" in render(report, "md")
    data = json.loads(render(report, "json"))
    assert data["cut_short"] is True
    (migration,) = data["migrations"]
    assert migration["total_s"] is None and migration["started_at"] == pytest.approx(40.0)
    assert data["probes"]["sysbench-cpu.eps"]["baseline"] == pytest.approx(100.0)
    assert "unfinished" in render(report, "text")


# --------------------------------------------------------------------------- Figure 4.1


async def test_disk_comparison_uses_the_study_layout(tmp_path: Path) -> None:
    events: list[Event] = []
    for disk, start, mb in (("local", T0, 36.0246), ("iscsi", T0 + 20, 18.9599)):
        events += [DiskStarted(disk=disk, t=start), Phase(name="warmup", t=start)]
        events += [dbench(start + k + 0.5, 999.0, 1.0) for k in range(10)]
        events.append(Phase(name="baseline", t=start + 10))
        latency = 154.092 if disk == "local" else 207.913
        events += [dbench(start + 10 + k + 0.5, mb, latency) for k in range(10)]
    log = await write_log(
        tmp_path / "disks.jsonl", in_order(events), scenario="disk-iscsi-vs-local"
    )
    report = load_report(log)
    (table,) = md_tables(render(report, "md"))
    assert table[0] == ["test", "local disk", "iSCSI storage", "change"]
    assert table[2] == ["disk throughput (dbench) MB/s", "36.02", "18.96", "-47.4%"]
    assert table[3] == ["disk latency (dbench) ms", "154.1", "207.9", "+34.9%"]
    text = render(report, "text")
    assert "Figure 4.1" in text and "Migrations" not in text
    rows = json.loads(render(report, "json"))["disk_comparison"]["rows"]
    assert rows[0] == {
        "metric": "dbench.mb_per_s_1s", "unit": "MB/s", "local": 36.0246, "iscsi": 18.9599,
        "change_pct": pytest.approx(-47.3695, abs=1e-4),
    }  # fmt: skip


# --------------------------------------------------------------------------- real samples


def test_the_log_of_real_probes() -> None:
    report = load_report(REAL)
    assert not report.cut_short and report.scenario is None
    data = json.loads(render(report, "json"))
    (migration,) = data["migrations"]
    # 0.6 s of ignored echo requests at a 0.05 s interval, inside the fake migration.
    assert 0.6 <= migration["unreachable_s"] <= 0.8 and 9 <= migration["lost_probes"] <= 14
    assert set(data["probes"]) == {"ping.rtt_ms", "sysbench-cpu.eps"}
    assert data["probes"]["sysbench-cpu.eps"]["baseline"] > 0
    text = render(report, "text")
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert rows[0] == list(CSV_HEADER) and len(rows) > 700
    assert {row[1] for row in rows[1:]} == {"warmup", "baseline", "migrating", "after"}


# --------------------------------------------------------------------------- plots


def test_probe_plot_is_sized_and_shaded() -> None:
    series = [(float(t), 100.0 if not 40 <= t <= 60 else 80.0) for t in range(100)]
    plot = probe_plot(series, [(40.0, 60.0)], 60, 12, False, title="cpu")
    lines = plot.splitlines()
    assert len(lines) <= 12 and max(map(len, lines)) <= 60
    assert "cpu  ░ migrating" in lines[0]
    body = lines[2]  # the top row of the canvas: shaded only inside the window
    assert SHADE in body and body.index(SHADE) > len(body) // 3
    assert probe_plot([], [], 60, 12, False, title="cpu") == "cpu: no readings"
    with pytest.raises(ValueError):
        probe_plot(series, [], 10, 3, False)


# --------------------------------------------------------------------------- CLI


def cli(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    report_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *args])


@pytest.mark.parametrize("fmt", ["text", "md", "csv", "json"])
def test_cli_prints_each_format(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = cli(str(REAL), "--format", fmt)
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    checks: dict[str, Any] = {
        "text": lambda o: o.startswith("miglab report: real-probes-loopback"),
        "md": lambda o: o.startswith("# miglab report"),
        "csv": lambda o: o.startswith(",".join(CSV_HEADER)),
        "json": lambda o: json.loads(o)["scenario"] == "real-probes-loopback",
    }
    assert checks[fmt](out)


def test_cli_refuses_what_is_not_a_session_log(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    for path, needle in (
        (other, "not a miglab session log"),
        (tmp_path / "missing.jsonl", "cannot read the session log"),
        (tmp_path, "cannot read the session log"),
    ):
        args = cli(str(path))
        with pytest.raises(BadInput, match=needle):
            args.handler(args)


def test_colours_follow_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    assert report_command.use_colors("always") and not report_command.use_colors("never")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not report_command.use_colors("auto")
    monkeypatch.delenv("NO_COLOR")
    assert report_command.use_colors("auto")


def test_cli_never_tracebacks_on_a_broken_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "odd.jsonl"
    log.write_text('{"kind":"session.header","t":1}\n{"kind":"sample","t":"soon"}\n')
    args = cli(str(log))
    try:
        code = args.handler(args)  # the reader may skip the line as a bad one...
    except BadInput as exc:  # ...or let it through to be refused here, with its key
        assert "t: Input should be a valid number" in str(exc)
    else:
        assert code == 0 and capsys.readouterr().out.startswith("miglab report")
