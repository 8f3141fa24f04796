"""Predictions of the simulated lab against real migrations on the QEMU sandbox.

Each row: a real run recorded as a session log (tests/data/predictions/, how in its
README) and the simulated lab's prediction from the same lab.toml (its ``[simulation]``
table holds only inputs measured before the migration: see the README), migrated by
miglab's own qemu driver over QMP to the simulated QEMUs (its polls, its convergence
policy). The bands are issue 15's: total time within 15 %, downtime and unreachable time
within 50 % or 100 ms (whichever is larger), and the same verdict on convergence. A row
the model misses is marked xfail (strict) with the reason: what the real system does
that the model lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.config import LabConfig, load_lab, parse_lab
from backend.experiments.metrics import MigrationMetrics
from backend.experiments.report import load_report
from backend.probes import PROBES
from backend.probes.dirtier import dirtier_command
from backend.probes.ping import ping_command, unreachable_gaps
from backend.sim.experiment import Experiment, Outcome, parse, run_experiment

DATA = Path(__file__).resolve().parents[1] / "data" / "predictions"
SEED = 0
TOTAL_BAND = 0.15
SHORT_BAND = 0.50
SHORT_FLOOR_S = 0.100


@dataclass(frozen=True)
class Predicted:
    ok: bool
    total_s: float
    downtime_s: float
    unreachable_s: float


@dataclass(frozen=True)
class Row:
    log: str
    lab: str
    dirtier_mib: int | None = None


ROWS = {
    "idle-100": Row("qemu-256-100-idle.jsonl", "lab-100.toml"),
    "idle-1000": Row("qemu-256-1000-idle.jsonl", "lab-1000.toml"),
    "dirtier-auto-converge": Row(
        "qemu-256-100-dirtier-auto-converge.jsonl",
        "lab-100-dirtier-auto-converge.toml",
        dirtier_mib=102,
    ),
    "dirtier-raise-downtime": Row(
        "qemu-256-100-dirtier-raise-downtime.jsonl",
        "lab-100-dirtier-raise-downtime.toml",
        dirtier_mib=102,
    ),
}


def measured(row: Row) -> MigrationMetrics:
    report = load_report(DATA / row.log)
    assert not report.simulated
    (migration,) = report.analysis.migrations
    return migration


async def predict(row: Row) -> Predicted:
    """The scenario's --quick timeline on the simulated lab of the row's lab.toml."""
    return await predict_lab(load_lab(DATA / row.lab), row.dirtier_mib)


async def predict_text(toml: str, dirtier_mib: int | None = None) -> Predicted:
    return await predict_lab(parse_lab(toml, file="<test>"), dirtier_mib)


async def predict_lab(lab: LabConfig, dirtier_mib: int | None) -> Predicted:
    ping = ("storage", ping_command(lab.guest.address, interval_s=0.2))
    workloads = [dirtier_command(dirtier_mib)] if dirtier_mib else []
    outcome = await run_experiment(
        Experiment(lab=lab, seed=SEED, probes=[ping], workloads=workloads, baseline_s=6, after_s=12)
    )
    summary = outcome.migration
    assert outcome.qemu is not None  # predicted through miglab's qemu driver, over QMP
    assert summary is not None and summary.downtime_s is not None
    return Predicted(summary.ok, summary.total_s, summary.downtime_s, unreachable(outcome))


def unreachable(outcome: Outcome) -> float:
    """The longest silence around the migration, as the report measures it."""
    start, end = outcome.window
    samples = parse(PROBES["ping"].factory, outcome.probes[0], outcome.epoch, "storage")
    return max(
        (
            g.duration_s
            for g in unreachable_gaps(samples)
            if g.duration_s is not None and g.end_t is not None and g.start_t is not None
            if g.end_t >= start and g.start_t <= end + 1
        ),
        default=0.0,
    )


def within(predicted: float, real: float, band: float, floor: float = 0.0) -> bool:
    return abs(predicted - real) <= max(band * real, floor)


def check(real: MigrationMetrics, got: Predicted) -> list[str]:
    """What falls outside the bands (empty: the prediction holds)."""
    misses = []
    if got.ok is not bool(real.ok):
        misses.append(f"converged: predicted {got.ok}, measured {real.ok}")
    assert real.total_s is not None
    if not within(got.total_s, real.total_s, TOTAL_BAND):
        misses.append(f"total {got.total_s:.2f} s, measured {real.total_s:.2f} s")
    if real.downtime_ms is not None:
        real_down = real.downtime_ms / 1000
        if not within(got.downtime_s, real_down, SHORT_BAND, SHORT_FLOOR_S):
            misses.append(f"downtime {got.downtime_s:.3f} s, measured {real_down:.3f} s")
    if real.unreachable_s is not None and not within(
        got.unreachable_s, real.unreachable_s, SHORT_BAND, SHORT_FLOOR_S
    ):
        misses.append(f"unreachable {got.unreachable_s:.3f} s, measured {real.unreachable_s:.3f} s")
    return misses


async def test_idle_256_mb_at_100_mbit_s() -> None:
    row = ROWS["idle-100"]
    assert check(measured(row), await predict(row)) == []


@pytest.mark.xfail(
    strict=True,
    reason="CPU-bound, not link-bound: on the loaded machine (load 5.9-7.2 on 2 cores) QEMU's "
    "one migration thread sent at 270-620 Mbit/s (query-migrate mbps) and took 3.04 s; the "
    "model gives the thread a whole core at the unloaded cost (LAB-NOTES: 706 ms, about "
    "1.7 Gbit/s) and the link's 940 Mbit/s: 1.40 s. It has no measure of other tenants' "
    "load; [simulation] sender_cores is where a user states it",
)
async def test_idle_256_mb_at_1000_mbit_s() -> None:
    row = ROWS["idle-1000"]
    assert check(measured(row), await predict(row)) == []


async def test_a_busy_sender_is_cpu_bound_at_1000_mbit_s() -> None:
    """The mechanism behind the miss above: a third of a core caps the thread's stream."""
    base = (DATA / "lab-1000.toml").read_text()
    idle = predict_text(base)
    busy = predict_text(base + "\n[simulation]\nsender_cores = 0.3\n")
    fast, slow = await idle, await busy
    # 0.3 / 0.0006 = 500 Mbit/s instead of the link's 940: the transfer ~1.9x longer.
    assert 1.6 < (slow.total_s - 0.3) / (fast.total_s - 0.3) < 2.2


async def test_ram_dirtier_with_raise_downtime() -> None:
    row = ROWS["dirtier-raise-downtime"]
    real = measured(row)
    # Its ping exited at the first ICMP error of the 9 s outage (iputils ends a -w ping
    # at the first error): no unreachable time was measured; QEMU's downtime was.
    assert real.unreachable_s is None and real.downtime_ms is not None
    assert check(real, await predict(row)) == []


@pytest.mark.xfail(
    strict=True,
    reason="downtime and unreachable time: QEMU stops the guest at the first sync whose "
    "pending bytes fit downtime-limit x its bandwidth estimate, measured per 100 ms window "
    "(noisy on the loaded machine: 54-100 Mbit/s here); the real last sync found ~1 MB "
    "(92 ms, 1 ping lost) where the model's steady estimate and average point in a window "
    "give ~300 ms (2 pings lost). Total time (-11 %), the throttle steps (1 % at sync 4, "
    "+10 every 2 syncs from sync 8, 99 % at sync 26) and the 35 syncs match",
)
async def test_ram_dirtier_with_auto_converge() -> None:
    row = ROWS["dirtier-auto-converge"]
    assert check(measured(row), await predict(row)) == []


async def test_a_miss_is_reported_outside_the_bands() -> None:
    """The check itself: a prediction off by more than the bands is named."""
    real = measured(ROWS["idle-100"])
    assert real.total_s is not None and real.unreachable_s is not None
    far = Predicted(True, real.total_s * 1.2, 0.0, real.unreachable_s + 0.5)
    misses = check(real, far)
    assert [m.split()[0] for m in misses] == ["total", "downtime", "unreachable"]
    assert check(real, Predicted(False, real.total_s, 0.257, real.unreachable_s))[0].startswith(
        "converged"
    )
