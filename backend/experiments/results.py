"""``miglab results``: many session logs as one tidy table (CSV, or Parquet with DuckDB).

One row per run x repetition x migration x metric, the run's parameters as columns,
so that pandas, DuckDB and R read it as it is::

    campaign,run_group,log,scenario,lab,simulated,seed,link_mbit,memory_mb,vcpus,hypervisor,
    convergence,migrate_bandwidth_mbit,downtime_limit_ms,status,repetition,migration,
    metric,value,unit

- Migration rows: ``migration`` is its number in its repetition (1, or 1 and 2 for a
  round trip); ``metric`` one of ``migration.total_s``, ``migration.downtime_ms``,
  ``migration.unreachable_s``, ``migration.lost_probes``, ``migration.bytes_sent``,
  ``migration.iterations``.
- Probe rows (their means per phase, pooled over the repetition's migrations):
  ``migration`` is empty; ``metric`` is ``PROBE.KEY.FIELD`` as in ``miglab report
  --format json``'s summary (``ping.rtt_ms.during_change_pct``).

The parameters come from each log's header (the lab as it ran, the simulation's
seed), so a log from ``miglab run`` has them as well as one from a campaign. An
unknown value is an empty cell, never a guess. Reading a log blocks.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from backend.experiments.metrics import PROBE_FIELDS
from backend.experiments.report import Report, load_report
from backend.session import SessionLog
from backend.terminal_text import printable

__all__ = ["COLUMNS", "RunInfo", "find_logs", "result_rows", "run_info", "write_csv"]

RUN_COLUMNS = (
    "campaign",
    "run_group",
    "log",
    "scenario",
    "lab",
    "simulated",
    "seed",
    "link_mbit",
    "memory_mb",
    "vcpus",
    "hypervisor",
    "convergence",
    "migrate_bandwidth_mbit",
    "downtime_limit_ms",
    "status",
)
COLUMNS = (*RUN_COLUMNS, "repetition", "migration", "metric", "value", "unit")

MIGRATION_METRICS = (
    ("total_s", "s"),
    ("downtime_ms", "ms"),
    ("unreachable_s", "s"),
    ("lost_probes", "count"),
    ("bytes_sent", "bytes"),
    ("iterations", "count"),
)

# Where each parameter column is in the header's "lab" (lab.toml as it ran).
_LAB_KEYS = {
    "link_mbit": ("lab", "link_mbit"),
    "memory_mb": ("guest", "memory_mb"),
    "vcpus": ("guest", "vcpus"),
    "hypervisor": ("hypervisor", "driver"),
    "convergence": ("hypervisor", "convergence"),
    "migrate_bandwidth_mbit": ("hypervisor", "migrate_bandwidth_mbit"),
    "downtime_limit_ms": ("hypervisor", "downtime_limit_ms"),
}

Cell = str | int | float | bool | None


@dataclass(frozen=True)
class RunInfo:
    """A log's run-level columns, from its header and end marker."""

    columns: dict[str, Cell]


def find_logs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The logs named: files as given, folders searched for ``*.jsonl`` (sorted)."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.jsonl") if p.is_file()))
        else:
            found.append(path)
    return found


def _get(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _cell(value: object) -> Cell:
    """A header value as a cell: numbers and text as they are, anything else unknown."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return None


def run_info(header: dict[str, Any], end: dict[str, Any] | None, log: Path) -> RunInfo:
    campaign = header.get("campaign")
    columns: dict[str, Cell] = {
        "campaign": _cell(_get(campaign, "name")),
        "run_group": _cell(_get(campaign, "group")),
        "log": str(log),
        "scenario": _cell(header.get("scenario")),
        "lab": _cell(_get(header, "lab", "lab", "name")),
        "simulated": bool(header.get("simulated")),
        "seed": _cell(_get(header, "simulation", "seed")),
    }
    for column, keys in _LAB_KEYS.items():
        columns[column] = _cell(_get(header.get("lab"), *keys))
    status = (end or {}).get("status")
    columns["status"] = status if isinstance(status, str) else "cut short"
    return RunInfo(columns)


def _report_rows(report: Report, info: RunInfo) -> Iterator[dict[str, Cell]]:
    for repetition in report.analysis.repetitions:
        base = {**info.columns, "repetition": repetition.number}
        for migration in repetition.migrations:
            for name, unit in MIGRATION_METRICS:
                value = getattr(migration, name)
                yield {
                    **base,
                    "migration": migration.number,
                    "metric": f"migration.{name}",
                    "value": value,
                    "unit": unit,
                }
        for probe in repetition.probes.values():
            for name in PROBE_FIELDS:
                unit = "%" if name.endswith("_pct") else probe.spec.unit
                yield {
                    **base,
                    "migration": None,
                    "metric": f"{probe.name}.{name}",
                    "value": getattr(probe, name),
                    "unit": unit,
                }


def result_rows(logs: Sequence[Path]) -> Iterator[dict[str, Cell]]:
    """Every row of every log, log by log (each read once; raises SessionLogError)."""
    for log in logs:
        report = load_report(log)
        with SessionLog(log) as opened:
            header = opened.header
        info = run_info(header, None if report.cut_short else {"status": report.end_status}, log)
        yield from _report_rows(report, info)


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return printable(str(value))  # names from a log: never terminal escapes


def write_csv(rows: Iterable[dict[str, Cell]], out: TextIO) -> int:
    """The table as CSV (a header line, then a row at a time); returns the rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([_text(row.get(column)) for column in COLUMNS])
        count += 1
    return count


# The Parquet file's column types (DuckDB's names); a CSV has none, so they are said here.
_TYPES = {
    "campaign": "VARCHAR",
    "run_group": "VARCHAR",
    "log": "VARCHAR",
    "scenario": "VARCHAR",
    "lab": "VARCHAR",
    "simulated": "BOOLEAN",
    "seed": "UBIGINT",
    "link_mbit": "BIGINT",
    "memory_mb": "BIGINT",
    "vcpus": "BIGINT",
    "hypervisor": "VARCHAR",
    "convergence": "VARCHAR",
    "migrate_bandwidth_mbit": "BIGINT",
    "downtime_limit_ms": "BIGINT",
    "status": "VARCHAR",
    "repetition": "BIGINT",
    "migration": "BIGINT",
    "metric": "VARCHAR",
    "value": "DOUBLE",
    "unit": "VARCHAR",
}


class ParquetUnavailable(RuntimeError):
    """DuckDB (the optional ``parquet`` extra) is not installed."""


def write_parquet(rows: Iterable[dict[str, Cell]], path: Path) -> int:
    """The table as Parquet, typed (written with DuckDB: ``pip install 'miglab[parquet]'``)."""
    try:
        import duckdb  # an optional extra, and only this path needs it
    except ImportError:
        raise ParquetUnavailable(
            "writing Parquet needs DuckDB: pip install 'miglab[parquet]' (or write .csv)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="miglab-results-") as scratch:
        staged = Path(scratch) / "results.csv"
        with open(staged, "w", encoding="utf-8", newline="") as out:
            count = write_csv(rows, out)
        columns = ", ".join(f"'{name}': '{kind}'" for name, kind in _TYPES.items())
        connection = duckdb.connect()
        try:
            connection.execute(
                f"COPY (SELECT * FROM read_csv(?, header = true, columns = {{{columns}}})) "
                "TO ? (FORMAT parquet)",
                [str(staged), str(path)],
            )
        finally:
            connection.close()
    return count
