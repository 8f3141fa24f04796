"""How fast and how light are `miglab report` and `miglab import`? Prints numbers; asserts
nothing.

For each size (events), a synthetic session log (tests/support/report_logs.py: ping
every 0.2 s, sysbench and dbench every second, repetitions with a migration each) is
written to a temporary directory, and each of these runs as its own process, side by
side in this one run, timed (wall) with its peak RSS (from wait4; the logs are made
in a process of their own, so that no child inherits a large RSS from this one):

  floor       python reading the log a line at a time and json.loads-ing each line:
              the least any reader of the log can do (the anchor of the ratios)
  report      `miglab report --format json LOG`
  report-txt  `miglab report LOG` (tables and plots)
  report-csv  `miglab report --format csv LOG`

and, for `import`, a ping -D capture of as many lines: `miglab import ping` against a
floor that reads the capture and runs the same ping parser over every line without
keeping anything. Targets (issue 10): report of 1.5 M events under 15 s and 300 MB,
within 3x the floor.

    .venv/bin/python tests/bench/bench_report.py [--events 400000 1500000] [--skip-import]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The logs are made in a process of their own: a child's peak RSS (wait4) counts what it
# inherited from this process at the fork, so this one must stay small.
MAKE_LOG = """
import sys
from dataclasses import replace
from pathlib import Path
from tests.support.report_logs import Shape, events_per_second, write_log
shape = Shape(seed=7, repetitions=10, round_trip=True)
seconds = int(sys.argv[2]) / events_per_second(shape) / shape.repetitions
write_log(Path(sys.argv[1]), replace(shape, seconds=seconds))
"""

MAKE_PING = """
import sys
from pathlib import Path
from tests.support.report_logs import write_ping_capture
write_ping_capture(Path(sys.argv[1]), int(sys.argv[2]))
"""

FLOOR = """
import json, sys
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
        n += 1
print(n)
"""

IMPORT_FLOOR = """
import sys
from backend.probes.ping import PingParser
parser = PingParser("console")
n = 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        n += len(parser.feed(line.rstrip("\\n")))
print(n)
"""


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one process; its output is thrown away."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        assert process.stderr is not None
        raise SystemExit(f"{argv} failed ({process.returncode}): {process.stderr.read()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def report_log(tmp: Path, events: int) -> Path:
    path = tmp / f"session-{events}.jsonl"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", MAKE_LOG, str(path), str(events)], env=env, check=True)
    return path


def ping_capture(tmp: Path, lines: int) -> Path:
    path = tmp / f"ping-{lines}.txt"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", MAKE_PING, str(path), str(lines)], env=env, check=True)
    return path


def row(name: str, wall: float, rss: float, floor: tuple[float, float]) -> str:
    return (
        f"  {name:<11} {wall:8.2f} s  {rss:8.1f} MiB   "
        f"time x{wall / floor[0]:5.2f}  rss x{rss / floor[1]:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[400_000, 1_500_000])
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--formats", nargs="+", default=["json", "text", "csv"])
    args = parser.parse_args()
    python = sys.executable
    miglab = [python, "-m", "tui.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp_dir:
        tmp = Path(tmp_dir)
        for events in args.events:
            log = report_log(tmp, events)
            lines = sum(1 for _ in log.open("rb"))
            size = log.stat().st_size / 2**20
            print(f"log of {lines} lines, {size:.0f} MiB ({python})")
            floor = measure([python, "-c", FLOOR, str(log)])
            print(row("floor", *floor, floor))
            for fmt in args.formats:
                wall, rss = measure([*miglab, "report", "--format", fmt, str(log)])
                print(row(f"report-{fmt}", wall, rss, floor))
            log.unlink()
            if args.skip_import:
                continue
            capture = ping_capture(tmp, events)
            size = capture.stat().st_size / 2**20
            print(f"ping capture of {events} lines, {size:.0f} MiB")
            floor = measure([python, "-c", IMPORT_FLOOR, str(capture)])
            print(row("floor", *floor, floor))
            out = tmp / "imported.jsonl"
            wall, rss = measure([*miglab, "import", "ping", str(capture), "-o", str(out)])
            print(row("import", wall, rss, floor))
            out.unlink()
            capture.unlink()


if __name__ == "__main__":
    main()
