"""What the report says about the log it read: skipped events are counted and named,
a newer schema is warned about, a byte-order mark is no reason to refuse a log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.events import SCHEMA_VERSION
from backend.experiments.report import load_report, render
from backend.session import read_session

ROOT = Path(__file__).resolve().parents[2]
HEADER = {"kind": "session.header", "t": 1000.0, "schema": SCHEMA_VERSION}

pytestmark = pytest.mark.timeout(60)


def _ping(t: float, seq: int, rtt: object = 1.0) -> dict[str, object]:
    return {
        "kind": "sample", "t": t, "probe": "ping", "host": "h",
        "values": {"seq": seq, "rtt_ms": rtt},
    }  # fmt: skip


def write(path: Path, *records: dict[str, object], prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "".join(json.dumps(r) + "\n" for r in records).encode())
    return path


def test_events_of_a_known_kind_that_do_not_validate_are_counted_and_named(
    tmp_path: Path,
) -> None:
    log = write(
        tmp_path / "wrong.jsonl",
        HEADER,
        _ping(1001.0, 1),
        _ping(1002.0, 2, rtt="fast"),  # a sample whose value is not a number
        {"kind": "migration.finished", "t": 1003.0, "ok": "maybe"},  # no source, no dest
        _ping(1004.0, 3),
        {"kind": "some.future.kind", "t": 1005.0},  # unknown: kept, not an error
    )
    session = read_session(log)
    assert session.skipped.total == 2
    report = load_report(log)
    text = render(report, "text")
    assert "1 line skipped (a sample event that does not validate: values.rtt_ms" in text
    assert "line 3" in text
    assert "1 line skipped (a migration.finished event that does not validate" in text
    assert "line 4" in text
    data = json.loads(render(report, "json"))
    assert data["skipped_lines"]["count"] == 2
    assert [m for m in data["migrations"]] == []  # the broken migration is not half-read


def test_a_log_of_a_newer_schema_is_reported_with_a_warning(tmp_path: Path) -> None:
    log = write(tmp_path / "new.jsonl", {**HEADER, "schema": SCHEMA_VERSION + 1}, _ping(1001, 1))
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "report", str(log)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    assert f"warning: {log}: the log is of schema {SCHEMA_VERSION + 1}" in result.stderr
    assert f"newer than this miglab's ({SCHEMA_VERSION})" in result.stdout
    data = json.loads(render(load_report(log), "json"))
    assert data["warnings"] and "schema" in data["warnings"][0]


def test_a_log_of_this_schema_has_no_warning(tmp_path: Path) -> None:
    log = write(tmp_path / "same.jsonl", HEADER, _ping(1001, 1))
    assert load_report(log).warnings == ()


def test_a_log_starting_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    log = write(tmp_path / "bom.jsonl", HEADER, _ping(1001, 1), prefix=b"\xef\xbb\xbf")
    session = read_session(log)
    assert session.header["kind"] == "session.header"
    assert len(session.events) == 1 and session.bad_lines == []
