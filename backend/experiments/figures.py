"""Figures for a paper: PNG, SVG and PDF with matplotlib (the optional ``figures`` extra).

- :func:`report_figures`: each probe metric of a session over time, like the study's
  figures: the migration windows shaded, the baseline, during and after means drawn
  over their parts of the timeline.
- :func:`comparison_figures`: per compared metric, a bar per arm at its mean with
  95 % CI whiskers.

Sizes and fonts fit a two-column paper (one column is 3.5 in wide, 8 pt text); text
stays text in the SVG and TrueType in the PDF, so an editor or a journal can restyle
it. Every file carries its provenance (scenario, lab, date, miglab version, source)
in its metadata. matplotlib is imported inside these functions only, without pyplot
(no global state, no GUI backend): nothing else in miglab pays for it. Writing
figures blocks.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend import __version__
from backend.terminal_text import printable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from backend.experiments.compare import Comparison
    from backend.experiments.report import Report

__all__ = [
    "COLUMN_IN",
    "FORMATS",
    "FiguresUnavailable",
    "Provenance",
    "comparison_figures",
    "report_figures",
]

FORMATS = ("png", "svg", "pdf")
COLUMN_IN = 3.5
"""One column of a two-column paper (IEEE 3.5 in, ACM 3.33 in)."""
HEIGHT_IN = 2.3
FONT_PT = 8
PNG_DPI = 300
TIME_LABEL = "time since the session started (s)"
COMPARED = ("migration.total_s", "migration.downtime_ms", "migration.unreachable_s")
"""The migration metrics a comparison draws (with every probe's during-change %)."""

# Colours that survive greyscale printing and colour blindness (Okabe-Ito).
_READINGS, _WINDOW, _BASELINE, _DURING, _AFTER = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
)


class FiguresUnavailable(RuntimeError):
    """matplotlib (the optional ``figures`` extra) is not installed."""


@dataclass(frozen=True)
class Provenance:
    """What a figure shows, from where, made by what."""

    title: str
    scenario: str
    lab: str
    date: str
    """When the session was measured; for a comparison, when the figure was made (ISO 8601,
    UTC; each compared log's own date is in its header)."""
    source: str
    """The session log, or the logs compared."""
    version: str = __version__

    @property
    def description(self) -> str:
        return (
            f"scenario {self.scenario}; lab {self.lab}; date {self.date}; "
            f"miglab {self.version}; from {self.source}"
        )

    def metadata(self, fmt: str) -> dict[str, Any]:
        """The file format's own metadata keys (each format has its set)."""
        creator = f"miglab {self.version}"
        if fmt == "png":
            return {
                "Title": self.title,
                "Description": self.description,
                "Software": creator,
                "Source": self.source,
                "Scenario": self.scenario,
                "Lab": self.lab,
                "Measured": self.date,
            }
        if fmt == "svg":
            return {
                "Title": self.title,
                "Creator": creator,
                "Date": self.date,
                "Description": self.description,
                "Source": self.source,
                "Keywords": [self.scenario, self.lab, creator],
            }
        return {
            "Title": self.title,
            "Creator": creator,
            "Subject": self.description,
            "Keywords": f"{self.scenario}, {self.lab}, {creator}",
        }


def _text(value: object) -> str:
    """A name from a log, as plain text (no control characters) for a label or metadata."""
    return printable(str(value))


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _stem(*parts: str) -> str:
    return "-".join(_UNSAFE.sub("_", part).strip("_") for part in parts if part)


@contextmanager
def _style() -> Iterator[Any]:
    try:
        import matplotlib
    except ImportError:
        raise FiguresUnavailable("figures need matplotlib: pip install 'miglab[figures]'") from None
    rc: dict[str, Any] = {
        "font.size": FONT_PT,
        "axes.titlesize": FONT_PT,
        "axes.labelsize": FONT_PT,
        "legend.fontsize": FONT_PT - 1,
        "xtick.labelsize": FONT_PT - 1,
        "ytick.labelsize": FONT_PT - 1,
        "lines.linewidth": 0.8,
        "axes.linewidth": 0.6,
        "svg.fonttype": "none",  # text stays text: searchable, restylable
        "svg.hashsalt": "miglab",  # the same figure, the same SVG ids
        "pdf.fonttype": 42,  # TrueType: what publishers ask for (no Type 3)
        "figure.constrained_layout.use": True,
    }
    with matplotlib.rc_context(rc):  # type: ignore[arg-type]  # keys typed as Literals
        yield matplotlib


def _save(figure: Figure, directory: Path, stem: str, provenance: Provenance) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in FORMATS:
        path = directory / f"{stem}.{fmt}"
        figure.savefig(
            path,
            format=fmt,
            dpi=PNG_DPI,
            metadata=provenance.metadata(fmt),
        )
        written.append(path)
    return written


# --------------------------------------------------------------------------- a session


def report_figures(report: Report, directory: str | Path) -> list[Path]:
    """One figure per probe metric of the session (in three formats); their paths."""
    analysis = report.analysis
    t0 = analysis.t0
    scenario = _text(report.scenario_id or "(no scenario)")
    lab = _text(report.lab or "?") + (" (simulated)" if report.simulated else "")
    written: list[Path] = []
    with _style():
        from matplotlib.figure import Figure

        for name, series in analysis.series.items():
            label = _text(f"{series.spec.label} ({series.spec.unit})")
            figure = Figure(figsize=(COLUMN_IN, HEIGHT_IN))
            axes = figure.add_subplot()
            axes.plot(
                [t - t0 for t in series.times],
                list(series.values),
                color=_READINGS,
                label=_text(series.spec.label),
                gid="readings",
            )
            for k, window in enumerate(analysis.windows, start=1):
                end = window.end if window.end is not None else analysis.end
                axes.axvspan(
                    window.start - t0,
                    end - t0,
                    color=_WINDOW,
                    alpha=0.25,
                    linewidth=0,
                    label="migration" if k == 1 else None,
                    gid=f"migration-window-{k}",
                )
            _phase_means(axes, report, name)
            axes.set_xlabel(TIME_LABEL)
            axes.set_ylabel(label)
            # Above the plot: inside, it would hide readings.
            axes.legend(
                loc="lower center",
                bbox_to_anchor=(0.5, 1.0),
                ncols=3,
                frameon=False,
                handlelength=1.5,
                columnspacing=1.0,
            )
            provenance = Provenance(
                title=f"{scenario}: {label} over time",
                scenario=scenario,
                lab=lab,
                date=_iso(t0),
                source=_text(report.path),
            )
            written += _save(figure, Path(directory), _stem(scenario, name), provenance)
    return written


def _phase_means(axes: Any, report: Report, name: str) -> None:
    """Each repetition's baseline, during and after means over their spans of time."""
    t0 = report.analysis.t0
    drawn: set[str] = set()
    for repetition in report.analysis.repetitions:
        probe = repetition.probes.get(name)
        if probe is None:
            continue
        spans = _spans(repetition.phases, repetition.windows, repetition.end)
        for part, color, mean in (
            ("baseline", _BASELINE, probe.baseline),
            ("during", _DURING, probe.during),
            ("after", _AFTER, probe.after),
        ):
            if mean is None:
                continue
            for start, end in spans.get(part, ()):
                axes.hlines(
                    mean,
                    start - t0,
                    end - t0,
                    colors=color,
                    linestyles="--",
                    linewidth=1.2,
                    label=f"{part} mean" if part not in drawn else None,
                    gid=f"{part}-mean",
                    zorder=3,  # over the readings they summarise
                )
                drawn.add(part)


def _spans(
    phases: Sequence[tuple[str, float]], windows: Sequence[Any], end: float
) -> dict[str, list[tuple[float, float]]]:
    """(start, end) of the baseline and after parts, and of each migration window."""
    spans: dict[str, list[tuple[float, float]]] = {"during": []}
    for window in windows:
        spans["during"].append((window.start, window.end if window.end is not None else end))
    for i, (phase, start) in enumerate(phases):
        if phase not in ("baseline", "after"):
            continue
        stop = phases[i + 1][1] if i + 1 < len(phases) else end
        if phase == "baseline" and windows:
            stop = min(stop, windows[0].start)
        spans.setdefault(phase, []).append((start, stop))
    return spans


# --------------------------------------------------------------------------- a comparison


_MIGRATION_LABELS = {
    "total_s": "migration time",
    "downtime_ms": "downtime",
    "unreachable_s": "unreachable time",
}
_FIELD_LABELS = {
    "baseline": "baseline",
    "during": "during migration",
    "after": "after",
    "during_change_pct": "change during migration",
    "worst_change_pct": "worst 1 s change",
}


def metric_label(metric: str, unit: str, migration: int | None = None) -> str:
    """An axis label a reader knows: "cpu (sysbench), change during migration (%)"."""
    from backend.experiments.metrics import METRICS

    group, _, field = metric.rpartition(".")
    label = metric
    if group == "migration" and field in _MIGRATION_LABELS:
        label = _MIGRATION_LABELS[field]
    elif field in _FIELD_LABELS:
        probe, _, key = group.partition(".")
        spec = next(
            (m for m in METRICS if m.probe == probe.partition("@")[0] and m.key == key), None
        )
        if spec is not None:
            host = probe.partition("@")[2]
            label = f"{spec.label}{' @' + host if host else ''}, {_FIELD_LABELS[field]}"
    if migration not in (None, 1):
        label += f" (leg {migration})"
    text = _text(f"{label} ({unit})" if unit else label)  # names from logs: plain text
    return "\n".join(textwrap.wrap(text, 34)) or text  # fits the height of one column


def _wanted(metric: str) -> bool:
    return metric in COMPARED or metric.endswith(".during_change_pct")


def _arm_names(comparison: Comparison) -> list[str]:
    """Each arm by what sets it apart ("link_mbit=100"), else by its label."""
    arms = comparison.arms
    keys = [k for k in arms[0].parameters if all(k in arm.parameters for arm in arms)]
    differ = [k for k in keys if len({repr(arm.parameters[k]) for arm in arms}) > 1]
    names = [", ".join(f"{k}={arm.parameters[k]}" for k in differ) for arm in arms]
    if not differ or len(set(names)) < len(names):
        names = [arm.label for arm in arms]
    return [_text(name) for name in names]


def comparison_figures(comparison: Comparison, directory: str | Path) -> list[Path]:
    """A bar chart with 95 % CI whiskers per compared metric (in three formats)."""
    arms = comparison.arms
    scenarios = sorted({_text(arm.parameters.get("scenario") or "?") for arm in arms})
    labs = sorted({_text(arm.parameters.get("lab") or "?") for arm in arms})
    sources = ", ".join(_text(arm.label) for arm in arms)
    made = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    names = _arm_names(comparison)
    written: list[Path] = []
    with _style():
        from matplotlib.figure import Figure

        for row in comparison.rows:
            if not _wanted(row.metric) or not any(cell.mean is not None for cell in row.arms):
                continue
            figure = Figure(figsize=(COLUMN_IN, HEIGHT_IN))
            axes = figure.add_subplot()
            positions = list(range(len(arms)))
            means = [cell.mean if cell.mean is not None else 0.0 for cell in row.arms]
            low = [m - c.ci95[0] if c.ci95 else 0.0 for m, c in zip(means, row.arms, strict=True)]
            high = [c.ci95[1] - m if c.ci95 else 0.0 for m, c in zip(means, row.arms, strict=True)]
            axes.bar(positions, means, color=_READINGS, width=0.6, label="mean", gid="means")
            axes.errorbar(
                positions,
                means,
                yerr=[low, high],
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=3,
                label="95% CI",
                gid="ci-whiskers",
            )
            if len(arms) > 2:  # long group names side by side would overlap
                axes.set_xticks(positions, names, rotation=20, ha="right")
            else:
                axes.set_xticks(positions, names)
            axes.set_ylabel(metric_label(row.metric, row.unit, row.migration))
            axes.legend(loc="best", frameon=False)
            provenance = Provenance(
                title=_text(f"{row.name}: {' vs '.join(names)}"),
                scenario=", ".join(scenarios),
                lab=", ".join(labs),
                date=made,
                source=sources,
            )
            stem = _stem("compare", row.metric, str(row.migration or ""))
            written += _save(figure, Path(directory), stem, provenance)
    return written
