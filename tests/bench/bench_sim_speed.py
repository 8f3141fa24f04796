"""`miglab run --sim --speed max` against its anchor `--speed 1000`, side by side in one run.

Prints numbers; asserts nothing. Runs ``miglab run SCENARIO --sim --quick`` (default
migrate-ping) on each lab, a row each: the study's Xen lab and the QEMU sandbox's
(``tests/data/predictions/lab-100.toml``: the hosts play QEMU, miglab's qemu driver
polls QMP), or the ``--lab F`` given (``--lab study`` for the study's), as a separate
process, alternately at
``--speed 1000`` and ``--speed max``, ``--repeat`` times each with the same seed, and
prints each one's wall time (median), the ratio max/1000, the time ``miglab scenarios``
takes (the import floor every miglab command pays), and whether the two logs hold the same
events (samples, phases, migrations; times taken relative to each log's epoch; command
durations left out: those are wall time).

    .venv/bin/python tests/bench/bench_sim_speed.py [--repeat 3] [--lab F ...] [--scenario ID]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIGLAB = [sys.executable, "-m", "tui.cli"]
COMPARED = ("sample", "phase", "migration.progress", "migration.finished", "domain.state")
TIMEOUT_S = 600
QEMU_LAB = ROOT / "tests" / "data" / "predictions" / "lab-100.toml"


def run(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT_S
    )  # a bench script, not the event loop: blocking is fine
    return time.perf_counter() - started


def events(log: Path) -> list[str]:
    """The log's comparable events, times relative to its simulated epoch."""
    out: list[str] = []
    epoch = 0.0
    with log.open() as f:
        for n, line in enumerate(f):
            event = json.loads(line)
            if n == 0:
                epoch = float(event.get("simulation", {}).get("epoch", 0.0))
                continue
            if event.get("kind") not in COMPARED:
                continue
            event["t"] = round(float(event["t"]) - epoch, 6)
            out.append(json.dumps(event, sort_keys=True))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario", default="migrate-ping")
    parser.add_argument("--lab", action="append", default=None, help="repeatable; 'study'")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for lab in args.lab or ["study", str(QEMU_LAB)]:
        measure(args.scenario, None if lab == "study" else lab, args.seed, args.repeat)
    return 0


def measure(scenario: str, lab: str | None, seed: int, repeat: int) -> None:
    """One row: the scenario on ``lab`` (None: the study's) at 1000 and max."""
    base = [*MIGLAB, "run", scenario, "--sim", "--quick", "--seed", str(seed)]
    if lab:
        base += ["--lab", lab]
    times: dict[str, list[float]] = {"1000": [], "max": []}
    floor: list[float] = []
    same = True
    with tempfile.TemporaryDirectory(prefix="miglab-bench-") as tmp:
        for k in range(repeat):
            logs = {}
            for speed in times:
                log = Path(tmp) / f"{speed}-{k}.jsonl"
                times[speed].append(run([*base, "--speed", speed, "--log", str(log)]))
                logs[speed] = log
            floor.append(run([*MIGLAB, "scenarios"]))
            same = same and events(logs["1000"]) == events(logs["max"])
    anchor, fast = statistics.median(times["1000"]), statistics.median(times["max"])
    print(f"{' '.join(base[2:])}  (load {os.getloadavg()[0]:.2f}, {repeat} runs each)")
    print(f"  --speed 1000  median {anchor:6.2f} s wall  {times['1000']}")
    print(f"  --speed max   median {fast:6.2f} s wall  {times['max']}")
    print(f"  miglab scenarios (imports only) median {statistics.median(floor):.2f} s")
    print(f"  ratio max / 1000: {fast / anchor:.2f}")
    print(f"  same events for the same seed: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
