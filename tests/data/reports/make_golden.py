"""Write the reports of tests/support/report_logs.CORPUS and of the real session log as
the report code makes them now: the before/after reference of
tests/unit/test_report_same_results.py. Run it only when a report is meant to change:

    .venv/bin/python tests/data/reports/make_golden.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.unit.test_report_same_results import GOLDEN, renders, sources  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, log in sources(Path(tmp)):
            for suffix, text in renders(log).items():
                (GOLDEN / f"{name}.{suffix}").write_text(text, encoding="utf-8")
                print(f"{name}.{suffix}")


if __name__ == "__main__":
    main()
