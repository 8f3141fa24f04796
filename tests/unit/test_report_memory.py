"""The report of a large log does not hold an object per event: a few bytes a reading
(flat arrays of numbers), measured with tracemalloc; the time is for tests/bench."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from backend.experiments.report import load_report, render
from backend.experiments.scenarios import builtin_scenarios
from tests.support.report_logs import Shape, events_per_second, write_log

SHAPE = Shape(seed=7, repetitions=4, round_trip=True)

pytestmark = pytest.mark.timeout(300)


def peak_bytes(log: Path) -> int:
    builtin_scenarios()  # read once, cached: not the log's
    tracemalloc.start()
    try:
        render(load_report(log), "json")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def sized(tmp_path: Path, events: int) -> Path:
    seconds = events / events_per_second(SHAPE) / SHAPE.repetitions
    return write_log(tmp_path / f"log-{events}.jsonl", replace(SHAPE, seconds=seconds))


def test_report_memory_is_a_few_bytes_a_reading_not_an_object_an_event(tmp_path: Path) -> None:
    small, large = sized(tmp_path, 10_000), sized(tmp_path, 100_000)
    small_peak, large_peak = peak_bytes(small), peak_bytes(large)
    lines = sum(1 for _ in large.open("rb"))
    per_event = (large_peak - small_peak) / (lines - sum(1 for _ in small.open("rb")))
    # A pydantic Sample per line cost ~2.2 KB; a reading in flat arrays (its time and value,
    # ping's kind, seq and time, and the transient sort for ping's median interval) ~100 B.
    assert per_event < 160, f"{per_event:.0f} bytes per event ({small_peak=}, {large_peak=})"
