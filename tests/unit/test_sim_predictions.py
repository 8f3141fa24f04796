"""Predictions of the simulated lab against real migrations on the QEMU and Xen sandboxes.

Each row: a real run recorded as a session log (tests/data/predictions/, how in its
README) and the simulated lab's prediction from the same lab.toml (its ``[simulation]``
table holds only what the hosts run and inputs measured before the migration: see the
README). A QEMU lab is migrated by miglab's own qemu driver over QMP to the simulated
QEMUs (its polls, its convergence policy), a Xen lab by ``xl migrate``. The QEMU rows
were recorded twice: on Debian 12's QEMU 7.2 (``qemu-*``, the model's history) and on
the sandbox's QEMU 10.0 (``qemu10-*``). The bands are issue 15's: total time within
15 %, downtime and unreachable time within 50 % or 100 ms (whichever is larger), and the
same verdict on convergence. A row the model misses is marked xfail (strict) with the
reason: what the real system does that the model lacks.
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
from backend.sim.assumptions import assumptions
from backend.sim.precopy_rules import Qemu
from backend.tomlfile import ConfigError
from tests.support.sim_experiment import Experiment, Outcome, parse, run_experiment

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
    "xen-idle-1": Row("xen-256-100-idle-1.jsonl", "lab-xen-100.toml"),
    "xen-idle-2": Row("xen-256-100-idle-2.jsonl", "lab-xen-100.toml"),
    "xen-dirtier": Row("xen-256-100-dirtier.jsonl", "lab-xen-100-dirtier.toml", dirtier_mib=102),
    "qemu10-idle-100": Row("qemu10-256-100-idle.jsonl", "lab-qemu10-100.toml"),
    "qemu10-idle-1000": Row("qemu10-256-1000-idle.jsonl", "lab-qemu10-1000.toml"),
    "qemu10-dirtier-auto-converge": Row(
        "qemu10-256-100-dirtier-auto-converge.jsonl",
        "lab-qemu10-100-dirtier-auto-converge.toml",
        dirtier_mib=102,
    ),
    "qemu10-dirtier-raise-downtime": Row(
        "qemu10-256-100-dirtier-raise-downtime.jsonl",
        "lab-qemu10-100-dirtier-raise-downtime.toml",
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
    if lab.hypervisor.driver == "qemu":
        assert outcome.qemu is not None  # predicted through miglab's qemu driver, over QMP
    else:
        assert outcome.xl is not None and outcome.xl_exit == 0  # through xl migrate
    assert summary is not None and summary.downtime_s is not None
    return Predicted(summary.ok, summary.total_s, summary.downtime_s, unreachable(outcome))


def unreachable(outcome: Outcome) -> float:
    """The longest silence around the migration, as the report measures it."""
    start, end = outcome.window
    samples = parse(PROBES["ping"].new_parser, outcome.probes[0], outcome.epoch, "storage")
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


# -- QEMU 10.0 (the sandbox's QEMU since 7.2 damaged the TCG guest's memory) -------------


async def test_qemu10_idle_256_mb_at_100_mbit_s() -> None:
    row = ROWS["qemu10-idle-100"]
    assert check(measured(row), await predict(row)) == []


@pytest.mark.xfail(
    strict=True,
    reason="CPU-bound, not link-bound, as on 7.2: on the loaded machine (load 8.5-9.2 on 2 "
    "cores) QEMU 10's one migration thread sent at 157-405 Mbit/s (query-migrate mbps) and "
    "took 4.43 s; the model gives the thread a whole core at the unloaded cost and the "
    "link's 940 Mbit/s: 1.40 s. It has no measure of other tenants' load; [simulation] "
    "sender_cores is where a user states it",
)
async def test_qemu10_idle_256_mb_at_1000_mbit_s() -> None:
    row = ROWS["qemu10-idle-1000"]
    assert check(measured(row), await predict(row)) == []


async def test_qemu10_ram_dirtier_with_raise_downtime() -> None:
    row = ROWS["qemu10-dirtier-raise-downtime"]
    real = measured(row)
    assert real.unreachable_s is not None and real.downtime_ms is not None  # ping held on
    assert check(real, await predict(row)) == []


@pytest.mark.xfail(
    strict=True,
    reason="downtime and unreachable time, as on 7.2: QEMU stops the guest at the first sync "
    "whose pending bytes fit downtime-limit x its bandwidth estimate, measured per 100 ms "
    "window (52-105 Mbit/s in this run's replies); the real last sync found ~1 MB (73 ms) "
    "where the model's steady estimate gives ~290 ms; and the 99 %-throttled guest answered "
    "ping seconds late (one probe lost, 1.38 s of silence) where the model's guest answers "
    "at once (0.41 s). Total time (-6 %) and the throttle steps (1 % at sync 4, +10 every "
    "10 s from sync 8, 99 % at sync 26) match",
)
async def test_qemu10_ram_dirtier_with_auto_converge() -> None:
    row = ROWS["qemu10-dirtier-auto-converge"]
    assert check(measured(row), await predict(row)) == []


async def throttle_steps(qemu_version: str) -> dict[int, float]:
    """Throttle % -> MiB sent when the driver first saw it (the stream ran at the link's
    ~94 Mbit/s throughout: bytes are the migration's clock)."""
    text = (DATA / ROWS["qemu10-dirtier-auto-converge"].lab).read_text()
    text = text.replace('qemu_version = "10.0"', f'qemu_version = "{qemu_version}"')
    lab = parse_lab(text, file="<test>")
    outcome = await run_experiment(
        Experiment(lab=lab, seed=SEED, workloads=[dirtier_command(102)], after_s=1)
    )
    assert outcome.qemu is not None
    steps: dict[int, float] = {}
    for event in outcome.qemu[1]:
        pct = getattr(event, "cpu_throttle_percentage", None)
        sent = getattr(event, "transferred_bytes", None)
        if pct is not None and sent is not None:
            steps.setdefault(int(pct), sent / 2**20)
    return steps


async def test_qemu10_auto_converge_syncs_every_5_s() -> None:
    """QEMU >= 9.2 (migration/cpu-throttle.c, cpu_throttle_dirty_sync_timer_tick): under
    auto-converge the bitmap is also synced every 5 s, mid-pass, so the throttle steps up
    every 10 s (two high syncs): ~112 MiB at 94 Mbit/s, as in the real 10.0 run (615.6 MiB
    sent at 11 %, 1516.1 at 91 %: 112.6 a step). 7.2 syncs at the end of each pass (the
    dirtier's ~105 MiB), a step every two passes: ~210 MiB."""
    new, old = await throttle_steps("10.0"), await throttle_steps("7.2")
    assert max(new) == max(old) == 99
    assert 100 <= (new[91] - new[11]) / 8 <= 125
    assert 180 <= (old[91] - old[11]) / 8 <= 230


def test_the_qemu_release_is_a_stated_input_of_the_prediction() -> None:
    stated = assumptions(load_lab(DATA / ROWS["qemu10-idle-100"].lab))
    default = assumptions(load_lab(DATA / ROWS["idle-100"].lab))
    assert [(a.value, a.source) for a in stated.inputs if a.key == "qemu_version"] == [
        ("10.0", "lab.toml [simulation]")
    ]
    assert [a.value for a in default.inputs if a.key == "qemu_version"] == ["7.2"]
    assert isinstance(stated.rules, Qemu) and stated.rules.dirty_sync_timer_s == 5.0
    assert isinstance(default.rules, Qemu) and default.rules.dirty_sync_timer_s == 0.0
    assert "QEMU 10.0" in stated.rules.title and "cpu_throttle_dirty_sync" in stated.rules.source
    with pytest.raises(ConfigError, match=r"<test>:\d+: simulation.qemu_version"):
        parse_lab(
            (DATA / ROWS["idle-100"].lab).read_text() + '\n[simulation]\nqemu_version = "ten"\n',
            file="<test>",
        )


# -- Xen 4.17 (the Xen sandbox: dom0s in QEMU TCG VMs) -----------------------------------

XEN_TCG_DOM0 = (
    "the Xen sandbox's dom0s are QEMU TCG VMs (emulated CPUs): xl's save helper (each page "
    "mapped through foreign-map hypercalls) and ssh (encrypting the stream) sent the 256 MiB "
    "at 15-31 Mbit/s (xl's 'Saving domain' to the receiver's restore: 70 s and 147 s) where "
    "the model plays native dom0s and the 100 Mbit/s link is the limit (24.8 s); and the guest "
    "stayed silent from its suspend through the emulated restore and the source's teardown "
    "(11.5 s and 15.7 s, ending ~1 s after xl's success) where the model's stop-and-copy "
    "takes 41 ms. lab.toml does not say the dom0s are emulated, and no stated input can: "
    "the model caps a QEMU sender's stream by its CPU ([simulation] sender_cores) but only "
    "charges a Xen dom0's CPU (send_cores_per_mbit), never slows its stream"
)


@pytest.mark.xfail(strict=True, reason="total and unreachable time: " + XEN_TCG_DOM0)
@pytest.mark.parametrize("name", ["xen-idle-1", "xen-idle-2"])
async def test_xen_idle_256_mb_at_100_mbit_s(name: str) -> None:
    row = ROWS[name]
    real = measured(row)
    assert real.downtime_ms is None  # xl 4.17 prints no downtime; ping measures it
    assert check(real, await predict(row)) == []


async def test_xen_idle_rows_miss_by_the_dom0_not_by_the_stop_rules() -> None:
    """What the xfail above rests on: both converge, the model at the link's pace."""
    got = await predict(ROWS["xen-idle-1"])
    limit = 256 * 2**20 * 8 / 94e6  # the guest over the link's TCP goodput
    assert got.ok and limit < got.total_s < limit + 3 and got.downtime_s < 0.1
    for name in ("xen-idle-1", "xen-idle-2"):
        real = measured(ROWS[name])
        assert real.ok and real.total_s is not None and real.total_s > 3 * got.total_s


@pytest.mark.xfail(
    strict=True,
    reason="total and unreachable time (637.7 s and 77.5 s measured, 70.7 s and 9.4 s "
    "predicted; both converge): the TCG dom0s again, both figures ~8.5x the model's, as if "
    "the stream ran at ~11 Mbit/s, not the link's 94. The guest ran out of memory after "
    "the migration (the OOM killer took dropbear: 'Connection lost' 3 s into 'after'); the "
    "migration itself completed. " + XEN_TCG_DOM0,
)
async def test_xen_ram_dirtier_256_mb_at_100_mbit_s() -> None:
    row = ROWS["xen-dirtier"]
    real = measured(row)
    assert real.downtime_ms is None and real.unreachable_s is not None
    assert check(real, await predict(row)) == []
