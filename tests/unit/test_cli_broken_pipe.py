"""`miglab … | head`: when the reader of miglab's output goes away, miglab stops quietly
with the shell's SIGPIPE status instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REAL_LOG = ROOT / "tests" / "data" / "sessions" / "real-ping-sysbench-loopback.jsonl"


def closed_pipe_run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run miglab with stdout a pipe whose reader is already closed: every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tui.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [("scenarios",), ("report", str(REAL_LOG))])
def test_a_reader_that_left_gets_no_traceback(args: tuple[str, ...]) -> None:
    result = closed_pipe_run(*args)
    assert "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 141, (result.returncode, result.stderr)
