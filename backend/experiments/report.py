"""``miglab report``: a session log's metrics as text, Markdown, CSV or JSON.

- text: the tables and a plot of every probe metric over time, the migration
  windows shaded; fits an 80-column terminal.
  Per ping, a table of sent, received, lost, the longest silence and the RTT over the
  whole log and each migration window (:mod:`.ping_trace`); per other probe, what the
  tool printed at its end (sysbench's totals and latencies, dbench's Throughput line).
- md: the same tables as GitHub Markdown, to paste into a paper or an issue.
- csv: one row per reading value: ``t,phase,probe,metric,value,unit`` (t in seconds
  since the session started, empty with the phase for a reading that has no time;
  end-of-run summaries are left out: they are no time point).
- json: ``{"scenario", "lab", "simulated", "cut_short", "migrations": [...],
  "probes": {...}, "repetitions": {...}, "disk_comparison": ... | null,
  "pings": {host: {"timed", "untimed_readings", "whole", "migrations": [...]}},
  "tool_summaries": [{"probe", "host", "started_at", "values": {...}}],
  "skipped_lines": {"count", "why": {reason: count}}, "warnings": [...]}``; every
  unknown value is null. ``started_at`` is in seconds since the session started,
  the clock of the csv's ``t``.

A disk comparison (``disk-iscsi-vs-local``) reports the study's Figure 4.1 table:
test, local disk, iSCSI storage, change. A log cut short (no end marker) is
reported as far as it goes, and says so.

Building a report is pure; only :func:`load_report` reads a file (blocking), a line at a
time, and :func:`write_csv` reads it once more for the rows of a report so loaded.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from backend.events import Event, Sample
from backend.experiments.metrics import (
    Analysis,
    LogData,
    MigrationMetrics,
    ProbeMetrics,
    Stats,
    analyze_data,
    plain_sample,
)
from backend.experiments.ping_trace import PingFigures, PingSummary
from backend.experiments.plots import probe_plot
from backend.experiments.scenarios import Scenario, builtin_scenarios
from backend.probes import PROBES, SUMMARY
from backend.session import T_MAX, T_MIN, Session, SessionLog, Skipped
from backend.terminal_text import printable

__all__ = [
    "FORMATS",
    "WIDTH",
    "Format",
    "Report",
    "build_report",
    "load_report",
    "render",
    "render_csv",
    "render_json",
    "render_markdown",
    "render_text",
    "report_json",
    "write_csv",
]

Format = Literal["text", "md", "csv", "json"]
FORMATS: tuple[Format, ...] = ("text", "md", "csv", "json")
WIDTH = 80
PLOT_HEIGHT = 15
CSV_HEADER = ("t", "phase", "probe", "metric", "value", "unit")
CUT_SHORT = (
    "cut short: the log has no end marker (the session crashed or was still running); "
    "this report covers what it holds."
)


@dataclass(frozen=True)
class Report:
    path: str
    """The log, as the report names it."""
    scenario_id: str | None
    scenario: Scenario | None
    """The built-in the log's scenario id names, if any (for its title and the study's result)."""
    lab: str | None
    simulated: bool
    cut_short: bool
    end_status: str | None
    bad_lines: tuple[int, ...]
    events: Sequence[Event] | None
    """The session's events when the report was built from a loaded :class:`Session`;
    None when it was read from the log a line at a time (the csv reads the log again)."""
    analysis: Analysis
    skipped: Skipped = field(default_factory=Skipped)
    """Log lines not read as events, counted by why."""
    warnings: tuple[str, ...] = ()
    """What the reader should know before trusting the numbers (a newer schema)."""
    source: Path | None = None
    """The log file the report was read from (for the csv's second pass)."""
    sample_hosts: Mapping[str, set[str]] = field(default_factory=dict)
    samples_in_order: bool = True
    model: str | None = None
    """A simulated run: the pre-copy model it used and what the prediction rests on."""


def build_report(session: Session) -> Report:
    """The report of a session log loaded whole (:func:`read_session`)."""
    data = LogData()
    for event in session.events:
        data.add(event)
    return _report(session.path, session.header, session.end, session, data, events=session.events)


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read a session log a line at a time and build its report (blocking).

    Memory does not follow the log's size: samples are kept as flat arrays of numbers
    and only the few other events become objects. Raises SessionLogError.
    """
    with SessionLog(path) as log:
        data = LogData()
        for number, record in log.records():
            if not data.add_plain_sample(record):
                event = log.parse(number, record)
                if event is not None:
                    data.add(event)
        return _report(log.path, log.header, log.end, log, data, events=None)


def _report(
    path: Path,
    header: dict[str, Any],
    end: dict[str, Any] | None,
    read: Session | SessionLog,
    data: LogData,
    *,
    events: Sequence[Event] | None,
) -> Report:
    scenario_id = header.get("scenario") if isinstance(header.get("scenario"), str) else None
    t0 = header.get("t")
    known = isinstance(t0, int | float) and not isinstance(t0, bool) and T_MIN <= t0 <= T_MAX
    analysis = analyze_data(data, t0=float(t0) if known and t0 is not None else None)
    status = (end or {}).get("status")
    return Report(
        path=str(path),
        scenario_id=scenario_id,
        scenario=builtin_scenarios().get(scenario_id) if scenario_id else None,
        lab=_lab_name(header.get("lab")),
        simulated=bool(header.get("simulated")),
        cut_short=end is None,
        end_status=status if isinstance(status, str) else None,
        bad_lines=tuple(read.bad_lines),
        events=events,
        analysis=analysis,
        skipped=read.skipped,
        warnings=tuple(read.warnings),
        source=path,
        sample_hosts=data.sample_hosts,
        samples_in_order=data.samples_in_order,
        model=_model_line(header.get("simulation")),
    )


def _model_line(simulation: object) -> str | None:
    """``model: TITLE [SOURCE]; rests on: KEY VALUE UNIT (WHERE FROM); ...`` from the header."""
    model = simulation.get("model") if isinstance(simulation, dict) else None
    if not isinstance(model, dict):
        return None
    inputs = model.get("inputs")
    parts = [
        f"{i.get('key')} {i.get('value')}{' ' + str(i['unit']) if i.get('unit') else ''} "
        f"({i.get('source')})"
        for i in (inputs if isinstance(inputs, list) else [])
        if isinstance(i, dict)
    ]
    rests = "; ".join(parts) if parts else "nothing stated"
    return f"model: {model.get('title')} [{model.get('source')}]; rests on: {rests}"


def _lab_name(lab: object) -> str | None:
    if isinstance(lab, dict):
        inner = lab.get("lab")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return str(inner["name"])
    return None


def render(report: Report, fmt: Format, *, colors: bool = False) -> str:
    renderers: dict[str, Callable[[Report], str]] = {
        "text": lambda r: render_text(r, colors=colors),
        "md": render_markdown,
        "csv": render_csv,
        "json": render_json,
    }
    try:
        return renderers[fmt](report)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}") from None


# --------------------------------------------------------------------------- numbers


def reading_text(value: float | None) -> str:
    """A reading in as many digits as it deserves: 234836, 12.5, 0.031."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:#.3g}"  # three significant digits, trailing zeros kept: 0.500, 0.0298


def interval_text(interval: tuple[float, float] | None) -> str:
    """A confidence interval: "12.5 .. 14.0"."""
    if interval is None:
        return "-"
    return f"{reading_text(interval[0])} .. {reading_text(interval[1])}"


def change_text(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _rel(report: Report, t: float) -> float:
    return t - report.analysis.t0


# --------------------------------------------------------------------------- tables

Align = Literal["<", ">"]


@dataclass
class _Table:
    title: str
    headers: list[str]
    align: list[Align]
    rows: list[list[str]]
    shrink: tuple[int, ...] = ()
    """Columns that may be cut (with '~') to fit the width, widest first."""

    def text(self, width: int = WIDTH) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(self.headers)]
        # Two blanks between columns, one when that is what it takes to fit.
        gap = 2 if sum(widths) + 2 * (len(widths) - 1) <= width else 1
        while sum(widths) + gap * (len(widths) - 1) > width:
            candidates = [i for i in self.shrink if widths[i] > 4]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            widths[widest] -= 1
        lines = textwrap.wrap(self.title, width)
        for cells in (self.headers, *self.rows):
            parts = [
                f"{_cut(cell, w):{a}{w}}"
                for cell, w, a in zip(cells, widths, self.align, strict=True)
            ]
            lines.append((" " * gap).join(parts).rstrip())
        return "\n".join(lines)

    def markdown(self) -> str:
        def row(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        rule = ["---:" if a == ">" else "---" for a in self.align]
        return "\n".join(
            [f"## {self.title}", "", row(self.headers), row(rule), *map(row, self.rows)]
        )


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "~"


def _migration_table(report: Report) -> _Table | None:
    migrations = report.analysis.migrations
    if not migrations:
        return None
    several = len(report.analysis.repetitions) > 1
    rows = [
        [
            f"{m.repetition}.{m.number}" if several else str(m.number),
            m.source or "?",
            m.dest or "?",
            f"{_rel(report, m.started_at):.1f}",
            reading_text(m.total_s),
            reading_text(m.downtime_ms),
            reading_text(m.unreachable_s),
            _int(m.lost_probes),
            _mib(m.bytes_sent),
            _int(m.iterations),
            _outcome(m),
        ]
        for m in migrations
    ]
    return _Table(
        "Migrations (at: s since the start; down: hypervisor's downtime; unreach: ping's)",
        [
            "#",
            "from",
            "to",
            "at s",
            "total s",
            "down ms",
            "unreach s",
            "lost",
            "MiB",
            "iter",
            "result",
        ],
        ["<", "<", "<", ">", ">", ">", ">", ">", ">", ">", "<"],
        rows,
        shrink=(1, 2, 10),
    )


def _outcome(migration: MigrationMetrics) -> str:
    if not migration.finished:
        return "unfinished"
    return "ok" if migration.ok else "FAILED"


def _metric_label(report: Report, probe: ProbeMetrics) -> str:
    hosts = {p.host for p in report.analysis.probes.values() if p.spec.probe == probe.spec.probe}
    return probe.spec.label + (f" @{probe.host}" if len(hosts) > 1 else "")


def _probe_table(report: Report) -> _Table | None:
    probes = report.analysis.probes
    if not probes:
        return None
    rows = [
        [
            _metric_label(report, p),
            p.spec.unit,
            reading_text(p.baseline),
            reading_text(p.during),
            reading_text(p.after),
            change_text(p.during_change_pct),
            change_text(p.worst_change_pct),
        ]
        for p in probes.values()
    ]
    return _Table(
        "Probes (means; change during the migration vs the baseline)",
        ["metric", "unit", "baseline", "during", "after", "during %", "worst 1s %"],
        ["<", "<", ">", ">", ">", ">", ">"],
        rows,
        shrink=(0, 1),
    )


def _summary_table(report: Report) -> _Table | None:
    analysis = report.analysis
    if len(analysis.repetitions) < 2:
        return None
    shown: list[tuple[str, str, Stats]] = []
    for name, result in analysis.summary.items():
        metric, _, field_name = name.rpartition(".")
        if name.startswith("migration"):
            shown.append((name, "", result))
        elif field_name in ("during_change_pct", "worst_change_pct"):
            probe = analysis.probes.get(metric)
            label = _metric_label(report, probe) if probe else metric
            what = "during %" if field_name == "during_change_pct" else "worst 1 s %"
            shown.append((f"{label}, {what}", "", result))
    rows = [
        [
            label,
            str(result.n),
            reading_text(result.mean),
            reading_text(result.std),
            interval_text(result.ci95),
        ]
        for label, _, result in shown
    ]
    return _Table(
        f"Across {len(analysis.repetitions)} repetitions (95% CI: Student's t)",
        ["metric", "n", "mean", "std", "95% CI"],
        ["<", ">", ">", ">", ">"],
        rows,
        shrink=(0,),
    )


_RIGHT: Align = ">"
_DISK_NAMES = {"local": "local disk", "iscsi": "iSCSI storage"}


def _disk_table(report: Report) -> _Table | None:
    analysis = report.analysis
    if not analysis.disk_rows:
        return None
    disks = analysis.disks
    rows = [
        [
            f"{_metric_label(report, analysis.probes[row.name])} {row.spec.unit}"
            if row.name in analysis.probes
            else row.name,
            *(reading_text(row.means.get(disk)) for disk in disks),
            change_text(row.change_pct),
        ]
        for row in analysis.disk_rows
    ]
    return _Table(
        "Disk comparison (the study's Figure 4.1; baseline means)",
        ["test", *(_DISK_NAMES.get(d, d) for d in disks), "change"],
        ["<", *[_RIGHT for _ in disks], ">"],
        rows,
        shrink=(0,),
    )


def _tables(report: Report) -> list[_Table]:
    makers: list[Callable[[Report], _Table | None]] = [_disk_table, _migration_table]
    # With a disk comparison, before/during/after means nothing: there is no migration.
    if not report.analysis.disk_rows:
        makers.append(_probe_table)
    tables = [table for make in makers if (table := make(report)) is not None]
    tables += _ping_tables(report)
    tables += _tool_summary_tables(report)
    summary = _summary_table(report)
    return tables if summary is None else [*tables, summary]


def _ping_tables(report: Report) -> list[_Table]:
    """Per ping: sent, received, lost, the longest silence and the RTT, over the whole log
    and each migration's window (a ping without times: the whole log, silences in seqs)."""
    analysis = report.analysis
    several = len(analysis.repetitions) > 1
    tables: list[_Table] = []
    for host, ping in analysis.pings.items():
        rows = [_ping_row(report, "whole log", ping.whole)]
        for migration, figures in zip(analysis.migrations, ping.windows, strict=True):
            number = f"{migration.repetition}.{migration.number}" if several else migration.number
            label = f"migration {number}"
            rows.append(_ping_row(report, label, figures) if figures else [label, *"-" * 10])
        if ping.timed:
            title = (
                f"Ping from {host} (silence: the longest run of lost probes, from the last "
                "reply before it to the first after; at: s since the start; RTT of the replies)"
            )
        else:
            title = (
                f"Ping from {host}: its readings have no time (ping printed none), so the "
                "silence is in probes (seqs) and no migration window can be told"
            )
        headers = ["span", "sent", "recv", "lost", "lost %", "silence s", "at s", "lost seqs"]
        headers += ["rtt med", "min", "p95 ms"]
        align: list[Align] = ["<", *[_RIGHT for _ in headers[1:]]]
        tables.append(_Table(title, headers, align, rows, shrink=(0, 7)))
    return tables


def _tool_summary_tables(report: Report) -> list[_Table]:
    """What each tool printed at its end, as its parser read it: the only figures of an
    imported summary, and the tool's own word beside the series."""
    tables: list[_Table] = []
    for summary in report.analysis.tool_summaries:
        units = PROBES[summary.probe].units if summary.probe in PROBES else {}
        rows = [
            [name, _figure(value), units.get(name, "")]
            for name, value in summary.values.items()
            if name != SUMMARY
        ]
        at = "" if summary.t is None else f", at {reading_text(_rel(report, summary.t))} s"
        title = f"{summary.probe} on {summary.host}: what it printed at its end{at}"
        tables.append(_Table(title, ["figure", "value", "unit"], ["<", ">", "<"], rows))
    return tables


def _figure(value: float | None) -> str:
    """A tool's figure as it printed it: counts whole, measures to their printed digits."""
    if value is not None and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return "-" if value is None else f"{value:.10g}"


def _ping_row(report: Report, label: str, figures: PingFigures) -> list[str]:
    gap = figures.silence
    if gap is None:
        silence, at, seqs = "-", "-", "none"
    else:
        silence = reading_text(gap.duration_s)
        at = f"{_rel(report, gap.start_t):.1f}" if gap.start_t is not None else "-"
        seqs = f"{gap.first_seq}" if gap.first_seq == gap.last_seq else (
            f"{gap.first_seq}-{gap.last_seq}")  # fmt: skip
        if figures.silence_to_end:
            seqs += " (end)"  # no reply after it: the silence lasts to the end of the log
    return [
        label,
        str(figures.sent),
        str(figures.received),
        str(figures.lost),
        "-" if figures.lost_pct is None else f"{figures.lost_pct:.1f}%",
        silence,
        at,
        seqs,
        reading_text(figures.rtt_median_ms),
        reading_text(figures.rtt_min_ms),
        reading_text(figures.rtt_p95_ms),
    ]


# --------------------------------------------------------------------------- text and md


def _headline(report: Report) -> str:
    name = report.scenario_id or "(no scenario)"
    scenario = report.scenario
    if scenario is not None:
        study = f" ({scenario.study_test})" if scenario.study_test else ""
        return f"{name}{study}: {scenario.title}"
    return name


def _facts(report: Report) -> list[str]:
    analysis = report.analysis
    reps = len(analysis.repetitions)
    span = analysis.end - analysis.t0
    facts = [
        f"lab {report.lab or '?'}",
        "simulated" if report.simulated else "real hosts",
        f"{reps} repetition{'s' if reps != 1 else ''}",
        f"{len(analysis.migrations)} migration{'s' if len(analysis.migrations) != 1 else ''}",
        f"{span:.0f} s" if _has_times(analysis) else "no times in it",
    ]
    if report.end_status and report.end_status != "ok":
        facts.append(f"ended: {report.end_status}")
    return facts


def _has_times(analysis: Analysis) -> bool:
    """False for a log of readings the tools printed no time for (an imported BusyBox ping)."""
    pings = analysis.pings.values()
    return bool(analysis.series or analysis.migrations or any(p.timed for p in pings)) or (
        not pings
    )


def _remarks(report: Report) -> list[str]:
    remarks = [f"warning: {warning}" for warning in report.warnings]
    remarks.extend(report.skipped.describe())
    remarks.extend(report.analysis.notes)
    for migration in report.analysis.migrations:
        remarks.extend(f"migration {migration.number}: {note}" for note in migration.notes)
    return remarks


def render_text(report: Report, *, colors: bool = False, width: int = WIDTH) -> str:
    wrap = textwrap.TextWrapper(width=width, subsequent_indent="  ")
    out: list[str] = [*wrap.wrap(f"miglab report: {_headline(report)}")]
    out.extend(wrap.wrap(f"log {report.path}"))
    out.extend(wrap.wrap(", ".join(_facts(report))))
    if report.model is not None:
        out.extend(wrap.wrap(report.model))
    if report.cut_short:
        out.extend(wrap.wrap(CUT_SHORT.capitalize()))
    for table in _tables(report):
        out += ["", table.text(width)]
    if report.scenario is not None and report.scenario.study_result:
        out += ["", f"The study ({report.scenario.study_test or report.scenario.id}) found:"]
        out += textwrap.wrap(
            report.scenario.study_result, width, initial_indent="  ", subsequent_indent="  "
        )
    remarks = _remarks(report)
    if remarks:
        out += ["", "Notes"]
        for remark in remarks[:20]:
            out += textwrap.wrap(remark, width, initial_indent="- ", subsequent_indent="  ")
        if len(remarks) > 20:
            out.append(f"- ... and {len(remarks) - 20} more")
    # Names, notes and errors come from the log: never terminal escapes. The plots'
    # own colours are added after (their labels are made printable on their own).
    text = printable("\n".join(out), keep_newlines=True)
    return "\n".join([text, *_plots(report, colors=colors, width=width)]) + "\n"


def _plots(report: Report, *, colors: bool, width: int) -> list[str]:
    analysis = report.analysis
    windows = [
        (_rel(report, w.start), _rel(report, w.end if w.end is not None else analysis.end))
        for w in analysis.windows
    ]
    out: list[str] = []
    for name, series in analysis.series.items():
        probe = analysis.probes.get(name)
        label = _metric_label(report, probe) if probe else name
        t0 = report.analysis.t0
        plot = probe_plot(
            ((t - t0, v) for t, v in zip(series.times, series.values, strict=True)),
            windows,
            width - 2,
            PLOT_HEIGHT,
            colors,
            title=printable(f"{label}, {series.spec.unit}"),
            xlabel="seconds since the session started",
        )
        out += ["", plot]
    return out


def render_markdown(report: Report) -> str:
    out = [f"# miglab report: {_headline(report)}", ""]
    out.append(f"Log `{report.path}`: " + ", ".join(_facts(report)) + ".")
    if report.model is not None:
        out += ["", printable(report.model)]
    if report.cut_short:
        out += ["", f"> **Cut short:** {CUT_SHORT.removeprefix('cut short: ')}"]
    for table in _tables(report):
        out += ["", table.markdown()]
    if report.scenario is not None and report.scenario.study_result:
        out += ["", f"## The study ({report.scenario.study_test or report.scenario.id})", ""]
        out.append(f"> {report.scenario.study_result}")
    remarks = _remarks(report)
    if remarks:
        out += ["", "## Notes", ""]
        out += [f"- {remark}" for remark in remarks]
    return printable("\n".join(out), keep_newlines=True) + "\n"  # no escapes from the log


# --------------------------------------------------------------------------- csv


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    write_csv(report, buffer)
    return buffer.getvalue()


def write_csv(report: Report, out: TextIO) -> None:
    """The csv, written a row at a time (a report read from a log reads it again)."""
    analysis = report.analysis
    hosts = report.sample_hosts
    writer = csv.writer(_Printable(out), lineterminator="\n")
    writer.writerow(CSV_HEADER)
    readings = _readings(report)
    if not report.samples_in_order:  # readings without a time stay in their log order
        readings = iter(sorted(readings, key=_time_key))
    phase_at = analysis.phase_finder()
    for t_abs, probe_name, host, values, unit in readings:
        probe = probe_name if len(hosts[probe_name]) == 1 else f"{probe_name}@{host}"
        # A reading the tool gave no time has none here either (and so no phase).
        phase = (phase_at(t_abs) or "") if t_abs is not None else ""
        t = f"{t_abs - analysis.t0:.6f}" if t_abs is not None else ""
        for key, value in values.items():
            shown = "" if value is None else repr(float(value))
            writer.writerow((t, phase, probe, key, shown, unit.get(key, "")))


def _time_key(reading: _Reading) -> float:
    return reading[0] if reading[0] is not None else -math.inf


_Reading = tuple[float | None, str, str, Mapping[str, float | None], Mapping[str, str]]


def _readings(report: Report) -> Iterator[_Reading]:
    """(t, probe, host, values, unit) of every sample that is a reading, in log order."""
    if report.events is not None:
        for event in report.events:
            if isinstance(event, Sample) and event.values.get(SUMMARY) != 1.0:
                yield event.t, event.probe, event.host, event.values, event.unit
        return
    if report.source is None:
        return
    with SessionLog(report.source) as log:
        for number, record in log.records():
            if record.get("kind") != "sample":
                continue
            plain = plain_sample(record)
            if plain is not None:
                t, probe, host, values = plain
                unit = record.get("unit") or {}
            else:
                sample = log.parse(number, record)
                if not isinstance(sample, Sample):
                    continue
                t, probe, host, values, unit = (
                    sample.t, sample.probe, sample.host, sample.values, sample.unit
                )  # fmt: skip
            if values.get(SUMMARY) != 1.0:
                yield t, probe, host, values, unit


class _Printable:
    """A text stream that writes everything with its control characters made visible."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(printable(text, keep_newlines=True))


# --------------------------------------------------------------------------- json


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _migration_json(report: Report, m: MigrationMetrics) -> dict[str, Any]:
    return {
        "from": m.source,
        "to": m.dest,
        "started_at": _round(_rel(report, m.started_at)),
        "total_s": _round(m.total_s),
        "downtime_ms": _round(m.downtime_ms),
        "unreachable_s": _round(m.unreachable_s),
        "lost_probes": m.lost_probes,
        "bytes_sent": m.bytes_sent,
        "iterations": m.iterations,
    }


def _probes_json(probes: dict[str, ProbeMetrics]) -> dict[str, Any]:
    return {
        name: {
            "unit": p.spec.unit,
            "baseline": _round(p.baseline),
            "during": _round(p.during),
            "after": _round(p.after),
            "during_change_pct": _round(p.during_change_pct),
            "worst_change_pct": _round(p.worst_change_pct),
        }
        for name, p in probes.items()
    }


def _ping_figures_json(report: Report, figures: PingFigures | None) -> dict[str, Any] | None:
    if figures is None:
        return None
    gap = figures.silence
    silence = None
    if gap is not None:
        silence = {
            "duration_s": _round(gap.duration_s),
            "started_at": None if gap.start_t is None else _round(_rel(report, gap.start_t)),
            "first_seq": gap.first_seq,
            "last_seq": gap.last_seq,
            "lost": gap.lost_count,
            "to_end": figures.silence_to_end,
        }
    return {
        "sent": figures.sent,
        "received": figures.received,
        "lost": figures.lost,
        "lost_pct": _round(figures.lost_pct),
        "longest_silence": silence,
        "rtt_ms": {
            "median": _round(figures.rtt_median_ms),
            "min": _round(figures.rtt_min_ms),
            "p95": _round(figures.rtt_p95_ms),
        },
    }


def _pings_json(report: Report, pings: dict[str, PingSummary]) -> dict[str, Any]:
    return {
        host: {
            "timed": ping.timed,
            "untimed_readings": ping.untimed,
            "whole": _ping_figures_json(report, ping.whole),
            "migrations": [_ping_figures_json(report, f) for f in ping.windows],
        }
        for host, ping in pings.items()
    }


def report_json(report: Report) -> dict[str, Any]:
    analysis = report.analysis
    disk: dict[str, Any] | None = None
    if analysis.disk_rows:
        disk = {
            "disks": list(analysis.disks),
            "rows": [
                {
                    "metric": row.name,
                    "unit": row.spec.unit,
                    **{d: _round(row.means.get(d)) for d in analysis.disks},
                    "change_pct": _round(row.change_pct),
                }
                for row in analysis.disk_rows
            ],
        }
    return {
        "scenario": report.scenario_id,
        "lab": report.lab,
        "simulated": report.simulated,
        "cut_short": report.cut_short,
        "migrations": [_migration_json(report, m) for m in analysis.migrations],
        "probes": _probes_json(analysis.probes),
        "repetitions": {
            "count": len(analysis.repetitions),
            "runs": [
                {
                    "number": r.number,
                    "migrations": [_migration_json(report, m) for m in r.migrations],
                    "probes": _probes_json(r.probes),
                }
                for r in analysis.repetitions
            ],
            "summary": {
                name: {
                    "n": s.n,
                    "mean": _round(s.mean),
                    "std": _round(s.std),
                    "ci95": None if s.ci95 is None else [_round(s.ci95[0]), _round(s.ci95[1])],
                }
                for name, s in analysis.summary.items()
            },
        },
        "disk_comparison": disk,
        "pings": _pings_json(report, analysis.pings),
        "tool_summaries": [
            {
                "probe": summary.probe,
                "host": summary.host,
                "started_at": None if summary.t is None else _round(_rel(report, summary.t)),
                "values": {k: _round(v) for k, v in summary.values.items() if k != SUMMARY},
            }
            for summary in analysis.tool_summaries
        ],
        "skipped_lines": {"count": report.skipped.total, "why": dict(report.skipped.counts)},
        "warnings": list(report.warnings),
    }


def render_json(report: Report) -> str:
    return json.dumps(report_json(report), indent=2, allow_nan=False) + "\n"
