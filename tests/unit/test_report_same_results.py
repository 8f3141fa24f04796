"""The report's numbers do not change when its insides do: every format of the reports of
diverse logs (repetitions, round trips, two pings, jittered samples, a failed migration,
a disk comparison, a log cut short, a log of real probes) equals what the report code
made before the streaming reader (tests/data/reports, see make_golden.py there)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.experiments.report import build_report, load_report, render
from backend.session import read_session
from tests.support.report_logs import CORPUS, write_log

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/data/reports"
REAL = ROOT / "tests/data/sessions/real-ping-sysbench-loopback.jsonl"
NAMES = [*CORPUS, "real"]


def sources(tmp: Path) -> Iterator[tuple[str, Path]]:
    for name, shape in CORPUS.items():
        yield name, write_log(tmp / f"{name}.jsonl", shape)
    yield "real", REAL


def renders(log: Path) -> dict[str, str]:
    """Every format; the csv (large) as its sha256."""
    report = dataclasses.replace(load_report(log), path="LOG")
    csv = render(report, "csv")
    return {
        "json": render(report, "json"),
        "txt": render(report, "text"),
        "md": render(report, "md"),
        "csv.sha256": hashlib.sha256(csv.encode()).hexdigest() + "\n",
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_format_is_what_it_was(name: str, tmp_path: Path) -> None:
    log = REAL if name == "real" else write_log(tmp_path / f"{name}.jsonl", CORPUS[name])
    for suffix, text in renders(log).items():
        expected = (GOLDEN / f"{name}.{suffix}").read_text(encoding="utf-8")
        assert text == expected, f"{name}.{suffix} changed"


@pytest.mark.parametrize("name", ["jittered-failed", "round-trip-two-pings"])
def test_a_report_read_a_line_at_a_time_equals_one_of_the_loaded_session(
    name: str, tmp_path: Path
) -> None:
    log = write_log(tmp_path / f"{name}.jsonl", CORPUS[name])
    streamed = load_report(log)
    loaded = build_report(read_session(log))
    assert streamed.events is None and loaded.events is not None
    for fmt in ("json", "text", "md", "csv"):
        assert render(streamed, fmt) == render(loaded, fmt), fmt
