"""`miglab import` writes as it reads: a capture of any length is never held whole, and
a capture that gives nothing leaves nothing behind."""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

import pytest

from backend.events import Sample
from backend.session import read_session
from tests.support.report_logs import write_ping_capture
from tui.commands import importer
from tui.commands.common import BadInput

pytestmark = pytest.mark.timeout(300)


def args(kind: str, file: Path, output: Path) -> argparse.Namespace:
    return argparse.Namespace(
        kind=kind, file=str(file), output=str(output), host="console", domain="guest",
        source="a", dest="b", start=None,
    )  # fmt: skip


def peak_of_import(tmp_path: Path, lines: int) -> int:
    source = write_ping_capture(tmp_path / f"ping-{lines}.txt", lines)
    tracemalloc.start()
    try:
        importer.run(args("ping", source, tmp_path / f"ping-{lines}.jsonl"))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_import_memory_does_not_grow_with_the_capture(tmp_path: Path) -> None:
    small, large = peak_of_import(tmp_path, 5_000), peak_of_import(tmp_path, 50_000)
    assert large < 2 * small + 2**20, f"{small=} {large=}: grows with the capture"
    session = read_session(tmp_path / "ping-50000.jsonl")
    samples = [e for e in session.events if isinstance(e, Sample)]
    assert len(samples) == 50_000 and session.header["t"] == samples[0].t
    assert [s.values.get("seq") for s in samples if s.values.get("lost")][:2] == [997.0, 1994.0]


def test_a_capture_with_no_readings_leaves_no_log_and_no_spool(tmp_path: Path) -> None:
    source = tmp_path / "empty.txt"
    source.write_text("PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(BadInput, match="no ping readings found"):
        importer.run(args("ping", source, out_dir / "log.jsonl"))
    assert list(out_dir.iterdir()) == []
