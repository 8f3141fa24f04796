"""xl prints no timestamps: an imported ``xl -v migrate`` transcript is a migration whose
length is unknown. The report must say so, not show 0 s (a value nobody measured)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.experiments.report import load_report

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests/data/xl/xl-migrate-v2-4.17-verbose.txt"


def test_an_imported_xl_migration_has_no_length_not_zero(tmp_path: Path) -> None:
    log = tmp_path / "xl.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "import", "xl", str(CAPTURE), "-o", str(log),
         "--start", "1000"],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [migration] = load_report(log).analysis.migrations
    assert migration.ok is True  # the transcript ends in "Migration successful."
    assert migration.total_s is None
    assert any("length is unknown" in note for note in migration.notes), migration.notes
