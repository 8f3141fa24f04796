"""``miglab compare A B [...]``: metrics of groups of runs side by side, with their spread.

Each *arm* is one or more session logs (a log, or a campaign's group folder). Every
repetition of every log in an arm is one value of each metric (the rows of
:mod:`backend.experiments.results`). Per metric and arm: n, mean, sample standard
deviation, the 95 % confidence interval of the mean (Student's t, n - 1 degrees of
freedom), the change of the mean in % against the first arm, whether the two
intervals overlap, and Welch's t-test p-value against the first arm.

Statistics come from ``scipy.stats`` (the optional ``stats`` extra), imported only
here, so the console and the other commands never pay for it (about 1 s, 200 MB with
numpy). Building a comparison reads the logs: it blocks.
"""

from __future__ import annotations

import json
import math
import statistics
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.experiments.report import change_text, interval_text, reading_text
from backend.experiments.results import Cell, find_logs, result_rows
from backend.terminal_text import printable

__all__ = [
    "Arm",
    "ArmStats",
    "Comparison",
    "MetricRow",
    "StatsUnavailable",
    "compare",
    "load_arm",
    "render_json",
    "render_text",
]

WIDTH = 80


class StatsUnavailable(RuntimeError):
    """scipy (the optional ``stats`` extra) is not installed."""


@dataclass
class Arm:
    """One side of a comparison: its logs and each metric's values (one per repetition)."""

    label: str
    logs: tuple[Path, ...]
    values: dict[tuple[str, int | None], list[float]] = field(default_factory=dict)
    units: dict[tuple[str, int | None], str] = field(default_factory=dict)
    runs: int = 0
    """Repetitions seen (over every log)."""
    parameters: dict[str, Cell] = field(default_factory=dict)
    """The run columns every log of the arm shares (scenario, link_mbit, ...)."""


@dataclass(frozen=True)
class ArmStats:
    n: int
    mean: float | None
    std: float | None
    ci95: tuple[float, float] | None
    change_pct: float | None
    """Of the mean, against the first arm's."""
    overlaps_first: bool | None
    """Whether its 95 % interval overlaps the first arm's (None: either is unknown)."""
    p_welch: float | None
    """Welch's t-test against the first arm (None: too few values, or no spread)."""


@dataclass(frozen=True)
class MetricRow:
    metric: str
    migration: int | None
    unit: str
    arms: tuple[ArmStats, ...]

    @property
    def name(self) -> str:
        return self.metric if self.migration in (None, 1) else f"{self.metric} #{self.migration}"


@dataclass(frozen=True)
class Comparison:
    arms: tuple[Arm, ...]
    rows: tuple[MetricRow, ...]

    def row(self, metric: str, migration: int | None = 1) -> MetricRow:
        for row in self.rows:
            if row.metric == metric and row.migration == migration:
                return row
        raise KeyError(metric)


_IDENTITY = ("log", "status", "seed", "run_group")


def load_arm(path: str | Path, label: str | None = None) -> Arm:
    """An arm from a log or a folder of logs (raises SessionLogError, FileNotFoundError)."""
    logs = find_logs([path])
    if not logs:
        raise FileNotFoundError(f"{path}: no session logs (*.jsonl) there")
    for log in logs:
        if not log.is_file():
            raise FileNotFoundError(f"{log}: no such session log")
    arm = Arm(label or "", tuple(logs))
    seen: set[tuple[str, int]] = set()
    shared: dict[str, Cell] | None = None
    groups: set[Cell] = set()
    for row in result_rows(logs):
        source, repetition = str(row["log"]), row["repetition"]
        assert isinstance(repetition, int)
        seen.add((source, repetition))
        groups.add(row["run_group"])
        run = {k: v for k, v in row.items() if k not in ("repetition", "migration", "metric")}
        run = {k: v for k, v in run.items() if k not in ("value", "unit", *_IDENTITY)}
        shared = run if shared is None else {k: v for k, v in shared.items() if run.get(k) == v}
        value = row["value"]
        migration = row["migration"]
        key = (str(row["metric"]), migration if isinstance(migration, int) else None)
        arm.units[key] = str(row["unit"])
        values = arm.values.setdefault(key, [])
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    arm.runs = len(seen)
    arm.parameters = shared or {}
    if not arm.label:
        (group,) = groups if len(groups) == 1 else (None,)
        given = Path(path)
        arm.label = str(group) if group else (given.stem if given.is_file() else given.name)
    return arm


def _scipy_stats() -> Any:
    try:
        from scipy import stats  # the optional extra; only a comparison needs it
    except ImportError:
        raise StatsUnavailable(
            "compare needs scipy for its statistics: pip install 'miglab[stats]'"
        ) from None
    return stats


def _summary(values: Sequence[float], t: Any) -> tuple[float | None, float | None, Any]:
    if not values:
        return None, None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    std = statistics.stdev(values)
    if std == 0:
        return mean, std, (mean, mean)
    low, high = t.interval(0.95, len(values) - 1, loc=mean, scale=std / math.sqrt(len(values)))
    return mean, std, (float(low), float(high))


def compare(arms: Sequence[Arm]) -> Comparison:
    """Every metric any arm has, arm by arm, against the first arm."""
    if len(arms) < 2:
        raise ValueError("a comparison needs two arms at least")
    stats = _scipy_stats()
    keys: list[tuple[str, int | None]] = []
    for arm in arms:
        keys.extend(k for k, v in arm.values.items() if v and k not in keys)
    rows: list[MetricRow] = []
    for key in keys:
        first = arms[0].values.get(key, [])
        first_mean, _, first_ci = _summary(first, stats.t)
        cells: list[ArmStats] = []
        for arm in arms:
            values = arm.values.get(key, [])
            mean, std, ci = _summary(values, stats.t)
            change = None
            if mean is not None and first_mean not in (None, 0):
                assert first_mean is not None
                change = (mean - first_mean) / abs(first_mean) * 100
            overlap = None
            if ci is not None and first_ci is not None:
                overlap = ci[0] <= first_ci[1] and first_ci[0] <= ci[1]
            p = None
            spread = (std or 0) > 0 or statistics.pstdev(first or [0.0]) > 0
            if len(values) >= 2 and len(first) >= 2 and arm is not arms[0] and spread:
                with warnings.catch_warnings():  # nearly equal values: its own caveat
                    warnings.simplefilter("ignore", RuntimeWarning)
                    result = stats.ttest_ind(values, first, equal_var=False)
                p = float(result.pvalue) if math.isfinite(result.pvalue) else None
            cells.append(ArmStats(len(values), mean, std, ci, change, overlap, p))
        unit = next((arm.units[key] for arm in arms if key in arm.units), "")
        rows.append(MetricRow(key[0], key[1], unit, tuple(cells)))
    return Comparison(tuple(arms), tuple(rows))


# --------------------------------------------------------------------------- output


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def render_text(comparison: Comparison, width: int = WIDTH) -> str:
    arms = comparison.arms
    out = [f"miglab compare: {len(arms)} arms (change, overlap and p against the first)"]
    keys = [k for k in arms[0].parameters if all(k in arm.parameters for arm in arms)]
    differ = [k for k in keys if len({repr(arm.parameters[k]) for arm in arms}) > 1]
    common = [f"{k}={arms[0].parameters[k]}" for k in keys if k not in differ]
    common = [text for text in common if not text.endswith(("=None", "="))]
    for i, arm in enumerate(arms, start=1):
        shown = ", ".join(f"{k}={arm.parameters[k]}" for k in differ)
        what = f"{i}. {arm.label}: {len(arm.logs)} logs, {arm.runs} runs"
        out += textwrap.wrap(what + (f"; {shown}" if shown else ""), width, subsequent_indent="   ")
    if common:
        out += textwrap.wrap("all: " + ", ".join(common), width, subsequent_indent="   ")
    for row in comparison.rows:
        out += ["", f"{row.name} ({row.unit})" if row.unit else row.name]
        header = ["arm", "n", "mean", "95% CI", "change", "overlap", "p Welch"]
        lines = [header]
        for i, cell in enumerate(row.arms, start=1):
            ci = interval_text(cell.ci95)
            first = i == 1
            lines.append(
                [
                    str(i),
                    str(cell.n),
                    reading_text(cell.mean),
                    ci,
                    "" if first else change_text(cell.change_pct),
                    "" if first else _yes_no(cell.overlaps_first),
                    "" if first or cell.p_welch is None else f"{cell.p_welch:.3g}",
                ]
            )
        widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
        for line in lines:
            cells = [f"{line[0]:<{widths[0]}}"]
            cells += [f"{text:>{w}}" for text, w in zip(line[1:], widths[1:], strict=True)]
            out.append("  " + "  ".join(cells).rstrip())
    # Labels and parameters come from logs and paths: never terminal escapes.
    return printable("\n".join(out), keep_newlines=True) + "\n"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "arms": [
            {
                "label": arm.label,
                "logs": [str(log) for log in arm.logs],
                "runs": arm.runs,
                "parameters": arm.parameters,
            }
            for arm in comparison.arms
        ],
        "metrics": [
            {
                "metric": row.metric,
                "migration": row.migration,
                "unit": row.unit,
                "arms": [
                    {
                        "n": cell.n,
                        "mean": _round(cell.mean),
                        "std": _round(cell.std),
                        "ci95": None
                        if cell.ci95 is None
                        else [_round(cell.ci95[0]), _round(cell.ci95[1])],
                        "change_pct": _round(cell.change_pct),
                        "overlaps_first": cell.overlaps_first,
                        "p_welch": _round(cell.p_welch),
                    }
                    for cell in row.arms
                ],
            }
            for row in comparison.rows
        ],
    }


def render_json(comparison: Comparison) -> str:
    return json.dumps(comparison_json(comparison), indent=2, allow_nan=False) + "\n"
