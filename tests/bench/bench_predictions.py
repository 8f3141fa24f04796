"""The prediction table re-measured: real migrations on a fresh QEMU sandbox against the
simulated lab's predictions from the same lab.toml, side by side in one run.

Prints numbers; asserts nothing (tests/unit/test_sim_predictions.py holds the recorded
rows to issue 15's bands). Needs root: it brings up its own `miglab sandbox` (256 MB
guest) at each row's link speed, runs the row's scenario with ``--quick`` as
tests/data/predictions/README.md says the recorded rows were made, predicts the same lab
file with the simulated lab (its ``[simulation]`` from `sandbox up`, plus the dirtier's
speed measured in the run's own baseline for the dirtier rows), prints measured against
predicted with what falls outside the bands, and takes the sandbox down. Takes about
10 minutes for the four QEMU rows here.

    .venv/bin/python tests/bench/bench_predictions.py [--rows idle-100 dirtier-raise-downtime]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend.config import LabConfig, Simulation, load_lab  # noqa: E402
from backend.experiments.report import load_report  # noqa: E402
from tests.unit.test_sim_predictions import Predicted, check, predict_lab  # noqa: E402

MIGLAB = [sys.executable, "-m", "tui.cli"]
DIRTIER_MIB = 102  # what migrate-ram-dirtier --quick rewrites in the guest


@dataclass(frozen=True)
class BenchRow:
    scenario: str
    link_mbit: int
    convergence: str | None = None  # None: the sandbox lab's (auto-converge)

    @property
    def dirtier(self) -> bool:
        return self.scenario == "migrate-ram-dirtier"


ROWS = {
    "idle-100": BenchRow("migrate-ping", 100),
    "idle-1000": BenchRow("migrate-ping", 1000),
    "dirtier-auto-converge": BenchRow("migrate-ram-dirtier", 100),
    "dirtier-raise-downtime": BenchRow("migrate-ram-dirtier", 100, "raise-downtime"),
}


def miglab(*args: str, timeout: float = 1800) -> None:
    # A bench script, not the event loop: blocking is fine.
    subprocess.run([*MIGLAB, *args], cwd=ROOT, check=True, timeout=timeout)


def with_convergence(lab_file: Path, convergence: str, out: Path) -> Path:
    """A copy of the sandbox's lab file whose [hypervisor] table sets ``convergence``."""
    text = lab_file.read_text()
    assert "\nconvergence =" not in text, "the sandbox lab file already sets convergence"
    out.write_text(text.replace("[hypervisor]\n", f'[hypervisor]\nconvergence = "{convergence}"\n'))
    return out


def dirtier_speed(log: Path) -> float | None:
    """The RAM dirtier's MiB/s in the run's baseline, before the migration."""
    probe = load_report(log).analysis.probes.get("dirtier.mib_per_s")
    return None if probe is None else probe.baseline


def lab_for_prediction(lab: LabConfig, dirtier_mib_s: float | None) -> LabConfig:
    if dirtier_mib_s is None:
        return lab
    simulation = lab.simulation or Simulation()
    return lab.model_copy(
        update={"simulation": simulation.model_copy(update={"dirtier_mib_s": dirtier_mib_s})}
    )


def measure(name: str, row: BenchRow, sandbox: Path, work: Path) -> str:
    lab_file = sandbox / "lab.toml"
    if row.convergence is not None:
        lab_file = with_convergence(lab_file, row.convergence, work / f"{name}.toml")
    log = work / f"{name}.jsonl"
    load = os.getloadavg()[0]
    started = time.monotonic()
    miglab("run", row.scenario, "--lab", str(lab_file), "--quick", "--log", str(log))
    wall = time.monotonic() - started
    (real,) = load_report(log).analysis.migrations
    speed = dirtier_speed(log) if row.dirtier else None
    lab = lab_for_prediction(load_lab(lab_file), speed)
    got: Predicted = asyncio.run(predict_lab(lab, DIRTIER_MIB if row.dirtier else None))
    misses = check(real, got)
    down = f"{real.downtime_ms:.0f}" if real.downtime_ms is not None else "-"
    unreach = f"{real.unreachable_s:.2f}" if real.unreachable_s is not None else "-"
    return (
        f"{name:<24} {real.total_s or 0:8.2f} {down:>7} {unreach:>7}   "
        f"{got.total_s:8.2f} {got.downtime_s * 1000:7.0f} {got.unreachable_s:7.2f}   "
        f"load {load:4.1f}  run {wall:5.0f} s  "
        + ("within the bands" if not misses else "missed: " + "; ".join(misses))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument(
        "--dir", type=Path, default=Path("/root/.cache/miglab/sandbox-bench-predict")
    )
    args = parser.parse_args()
    lines = [
        f"{'row':<24} {'measured: total s':>17} {'down ms':>7} {'unreach s':>9}"
        f"   {'predicted':>8} {'down ms':>7} {'unreach':>7}"
    ]
    with tempfile.TemporaryDirectory(prefix="bench-predictions-") as tmp:
        for link in sorted({ROWS[name].link_mbit for name in args.rows}):
            miglab("sandbox", "up", "--dir", str(args.dir), "--link-mbit", str(link))
            try:
                for name in args.rows:
                    if ROWS[name].link_mbit == link:
                        lines.append(measure(name, ROWS[name], args.dir, Path(tmp)))
                        print(lines[-1], flush=True)
            finally:
                miglab("sandbox", "down", "--dir", str(args.dir))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
