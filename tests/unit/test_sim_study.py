"""The study's row of issue 15's table: `miglab run SCENARIO --sim` against the 2009 study.

tests/unit/test_sim_fidelity.py holds tests 1-4 and 7 and Figure 4.1's dbench rows
(its experiments built by hand on the simulated clock). What it leaves out is here, run
the way a user runs them: the built-in scenario, its full timeline, ``--sim --speed max``
on the study's lab, read back with ``miglab report``'s own analysis. Figures from
REFERENCE.md; the bands are the fidelity tests' (a rate within 3 %, a change within the
study's own spread) and issue 15's (unreachable time within 50 %).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from backend.experiments.report import Report, load_report
from tui.cli import main


def simulate(scenario: str, log: Path) -> Report:
    with pytest.raises(SystemExit) as exit:
        main(["run", scenario, "--sim", "--speed", "max", "--seed", "0", "--log", str(log)])
    assert exit.value.code == 0
    report = load_report(log)
    assert report.simulated
    return report


def test_figure_4_1_ping_cpu_and_memory_on_iscsi_against_a_local_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {
        r.name: r for r in simulate("disk-iscsi-vs-local", tmp_path / "a1.jsonl").analysis.disk_rows
    }
    ping, cpu, memory = (
        rows["ping.rtt_ms"],
        rows["sysbench-cpu.eps"],
        rows["sysbench-memory.mib_per_s"],
    )
    # Study: ping 0.1109 -> 0.1867 ms (+68.35 %); memory 271.73 -> 270.66 MB/s (-0.39 %);
    # cpu 9952.45 -> 9899.59 events (-0.53 %). Model: 0.113 -> 0.190 (+67.9 %), -0.1 %, -0.1 %.
    assert ping.means["local"] == pytest.approx(0.1109, rel=0.1)
    assert ping.means["iscsi"] == pytest.approx(0.1867, rel=0.1)
    assert ping.change_pct is not None and 50 <= ping.change_pct <= 90
    assert cpu.means["iscsi"] == pytest.approx(9899.59, rel=0.03)
    assert memory.means["iscsi"] == pytest.approx(270.66, rel=0.03)
    for row in (cpu, memory):
        assert row.change_pct is not None and abs(row.change_pct) <= 3  # "no change"


def test_test_5_all_three_at_once_never_unreachable_the_disk_suffers_most(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    analysis = simulate("migrate-combined", tmp_path / "t5.jsonl").analysis
    (migration,) = analysis.migrations
    assert migration.ok and migration.unreachable_s == 0 and migration.lost_probes == 0
    drops = {
        name: probe.during_change_pct
        for name, probe in analysis.probes.items()
        if probe.spec.higher_is_better and probe.during_change_pct is not None
    }
    assert set(drops) == {"dbench.mb_per_s_1s", "sysbench-cpu.eps", "sysbench-memory.mib_per_s"}
    # Study: "disk suffered most". Model: dbench -42 %, sysbench cpu -8 %, memory -9 %.
    assert min(drops, key=lambda name: drops[name]) == "dbench.mb_per_s_1s"
    assert drops["dbench.mb_per_s_1s"] < 2 * max(drops.values())


def test_test_6_a_kernel_compile_leaves_the_guest_unreachable_29_s_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    analysis = simulate("migrate-kernel-compile", tmp_path / "t6.jsonl").analysis
    (migration,) = analysis.migrations
    (window,) = analysis.windows
    assert migration.ok and migration.unreachable_s is not None
    assert migration.unreachable_s == pytest.approx(29, rel=0.5)  # study: 29 s; model 29.2 s
    # One silence, and it is the stop-and-copy: it ends as the migration does.
    replies = [t for t in analysis.series["ping.rtt_ms"].times if window.start <= t]
    gaps = [(a, b) for a, b in pairwise(replies) if b - a > 5]
    assert len(gaps) == 1
    assert window.end - 1 <= gaps[0][1] <= window.end + 2


def test_test_7_the_ram_dirtier_within_issue_15s_bands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (migration,) = simulate("migrate-ram-dirtier", tmp_path / "t7.jsonl").analysis.migrations
    assert migration.ok and migration.total_s is not None and migration.unreachable_s is not None
    # Study: 5 min 56 s (356 s), unreachable 70 s. Model: 314.3 s (-12 %), 37.1 s (-47 %).
    assert migration.total_s == pytest.approx(356, rel=0.15)
    assert migration.unreachable_s == pytest.approx(70, rel=0.5)


@pytest.mark.xfail(
    strict=True,
    reason="test 1's migration takes 128.7 s on the model, the study's 1 min 36 s (96 s) "
    "+34 %: outside issue 15's 15 % (the fidelity test's band is < 180 s). The model shares "
    "the 100 Mbit/s links max-min fairly between the stream and dbench's iSCSI traffic; in "
    "the study the stream took about as long as an idle guest's (the model: 93.8 s) while "
    "dbench lost ~55 % at its lowest. What gave the stream the link there is not modelled",
)
def test_test_1_dbench_migration_time_within_15_percent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (migration,) = simulate("migrate-dbench", tmp_path / "t1.jsonl").analysis.migrations
    assert migration.ok and migration.total_s == pytest.approx(96, rel=0.15)
