"""`miglab campaign --sim`, `results` and `compare` end to end on the simulated lab.

The issue's proof: a campaign of 3 scenarios x 2 link speeds x 3 repetitions (quick
timelines) runs as a real `miglab` process, is interrupted once by SIGINT during a
migration (Ctrl-C), resumed, and its results table has exactly the expected rows; the
README's DuckDB query runs over it as printed there; `compare` of 100 vs 1000 Mbit/s
shows the migration ~x0.1 with intervals apart, and two seeds of one lab overlap.

The interrupt waits for a state (the run's log has a migration in progress), not for
time: the simulated clock only moves when the process is idle, so a slow machine makes
the migration slower, never shorter than the wait.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.experiments.campaign import load_campaign, log_is_complete, plan_runs
from backend.experiments.compare import compare, load_arm
from tui.cli import _parser

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("migrate-ping", "migrate-sysbench-cpu", "migrate-sysbench-memory")
SERIES = {
    "migrate-ping": "ping.rtt_ms",
    "migrate-sysbench-cpu": "sysbench-cpu.eps",
    "migrate-sysbench-memory": "sysbench-memory.mib_per_s",
}
MIGRATION_METRICS = (
    "total_s",
    "downtime_ms",
    "unreachable_s",
    "lost_probes",
    "bytes_sent",
    "iterations",
)
PROBE_FIELDS = ("baseline", "during", "after", "during_change_pct", "worst_change_pct")

CAMPAIGN = """\
name = "links"
title = "3 scenarios at 100 and 1000 Mbit/s"
scenarios = ["migrate-ping", "migrate-sysbench-cpu", "migrate-sysbench-memory"]
repetitions = 3
quick = true

[parameters.lab]
link_mbit = [100, 1000]
"""

SEEDS = """\
name = "seeds"
scenarios = ["migrate-ping"]
repetitions = 3
quick = true

[parameters.sim]
seed = [0, 1000]
"""


def miglab(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(*argv: str) -> tuple[int, str]:
    """A subcommand in this process (its handler, as `miglab` calls it)."""
    args = _parser().parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code: int = args.handler(args)
    return code, out.getvalue()


def migrating(log: Path) -> bool:
    """The run of ``log`` has a migration in progress (and has not ended)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False
    return '"kind":"migration.progress"' in text and '"kind":"session.end"' not in text


@dataclass(frozen=True)
class Done:
    out: Path
    first: str
    """stdout of the interrupted invocation"""
    first_code: int
    interrupted: Path
    """The log the interrupt cut."""
    second: str
    second_code: int


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Done:
    """The campaign, interrupted during the third run's migration, then resumed."""
    directory = tmp_path_factory.mktemp("campaign")
    file = directory / "links.toml"
    file.write_text(CAMPAIGN, encoding="utf-8")
    out = directory / "out"
    target = plan_runs(load_campaign(file), out)[2].log  # 3rd run: ~94 s migration at 100
    first = miglab("campaign", str(file), "--sim", "--speed", "300", "--out", str(out))
    try:
        while not migrating(target):
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, stderr
    second = miglab("campaign", str(file), "--sim", "--speed", "1000", "--out", str(out))
    stdout2, stderr2 = second.communicate()
    assert second.returncode == 0, stderr2
    return Done(out, stdout, first.returncode, target, stdout2, second.returncode)


def test_an_interrupted_campaign_keeps_what_it_had_and_resumes_at_the_cut_run(
    campaign: Done,
) -> None:
    assert "3 scenarios x 2 groups x 3 repetitions" in campaign.first
    assert re.search(r"2 done, 16 left, about \d+ (s|min) left", campaign.first)
    # The cut run's log was closed as interrupted and kept beside the redone one.
    aside = campaign.interrupted.with_name("r1.jsonl.incomplete-1")
    lines = aside.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[-1]) == {**json.loads(lines[-1]), "status": "interrupted"}
    assert f"kept the incomplete log as {aside}" in campaign.second
    assert "18 runs" in campaign.second and "2 done, 16 to run" in campaign.second
    assert "[3/18]" in campaign.second and "[2/18]" not in campaign.second
    assert "18 done, 0 left" in campaign.second
    logs = sorted(campaign.out.rglob("*.jsonl"))
    assert len(logs) == 18 and all(log_is_complete(log) for log in logs)


def test_a_finished_campaign_has_nothing_left_to_run(campaign: Done) -> None:
    code, out = cli("campaign", "--dry-run", "--sim", "--out", str(campaign.out), _file(campaign))
    assert code == 0
    assert "18 done, 0 to run" in out and "to run  " not in out


def _file(campaign: Done) -> str:
    return str(campaign.out.parent / "links.toml")


def expected_rows() -> set[tuple[str, int, int, str, int | None]]:
    """(scenario, link_mbit, campaign repetition, metric, migration) of every row."""
    rows: set[tuple[str, int, int, str, int | None]] = set()
    for scenario in SCENARIOS:
        for link in (100, 1000):
            for rep in (1, 2, 3):
                rows |= {(scenario, link, rep, f"migration.{m}", 1) for m in MIGRATION_METRICS}
                # The session pings the guest through every run: ping's row in each.
                for series in dict.fromkeys((SERIES[scenario], "ping.rtt_ms")):
                    rows |= {(scenario, link, rep, f"{series}.{f}", None) for f in PROBE_FIELDS}
    return rows


def test_the_results_table_has_exactly_one_row_per_run_migration_and_metric(
    campaign: Done, tmp_path: Path
) -> None:
    table = tmp_path / "results.csv"
    code, _ = cli("results", str(campaign.out), "-o", str(table))
    assert code == 0
    import csv

    with open(table, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    keys = [
        (
            r["scenario"],
            int(r["link_mbit"]),
            int(Path(r["log"]).stem.removeprefix("r")),
            r["metric"],
            int(r["migration"]) if r["migration"] else None,
        )
        for r in rows
    ]
    assert len(keys) == len(set(keys)) == 6 * (6 + 5) + 12 * (6 + 5 + 5)  # ping's 5 more
    assert set(keys) == expected_rows()
    assert {r["campaign"] for r in rows} == {"links"}
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["simulated"] for r in rows} == {"true"}
    totals = {(k[0], k[1]): float(r["value"]) for k, r in zip(keys, rows, strict=True)
              if k[3] == "migration.total_s"}  # fmt: skip
    assert all(totals[(s, 1000)] < totals[(s, 100)] / 5 for s in SCENARIOS)
    # Every run's migration is measured by the network, the session's ping's or its own.
    unreachable = [r["value"] for k, r in zip(keys, rows, strict=True)
                   if k[3] == "migration.unreachable_s"]  # fmt: skip
    assert len(unreachable) == 18 and all(value != "" for value in unreachable)


def readme_query() -> str:
    """The DuckDB query the README shows over results.csv, exactly as printed there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- results-query -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "the README has lost its results query"
    return match.group(1)


def test_the_readme_query_runs_over_the_results_table(
    campaign: Done, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _ = cli("results", str(campaign.out), "-o", str(tmp_path / "results.csv"))
    assert code == 0
    monkeypatch.chdir(tmp_path)
    query = readme_query()
    assert len(query.strip().splitlines()) == 3
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(query, "README.md", "exec"), {})  # the README's own three lines
    printed = out.getvalue()
    # The query prints the mean migration time per scenario and link speed.
    means = {
        (m.group(1), int(m.group(2))): float(m.group(3))
        for m in re.finditer(r"(migrate-[a-z-]+)\s*│\s*(\d+)\s*│\s*([\d.]+)", printed)
    }
    assert len(means) == 6, printed
    for scenario in SCENARIOS:
        assert 0.05 <= means[(scenario, 1000)] / means[(scenario, 100)] <= 0.2


def test_parquet_has_the_same_rows_typed(campaign: Done, tmp_path: Path) -> None:
    import duckdb

    code, _ = cli("results", str(campaign.out), "-o", str(tmp_path / "r.parquet"))
    assert code == 0
    described = duckdb.sql(f"DESCRIBE SELECT * FROM '{tmp_path / 'r.parquet'}'")
    types = {row[0]: row[1] for row in described.fetchall()}
    assert types["link_mbit"] == "BIGINT" and types["value"] == "DOUBLE"
    assert types["simulated"] == "BOOLEAN" and types["metric"] == "VARCHAR"
    counted = duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'r.parquet'}'").fetchall()
    assert counted == [(len(expected_rows()),)]


def test_compare_100_vs_1000_mbit_shows_a_tenth_of_the_time_with_intervals_apart(
    campaign: Done,
) -> None:
    slow = campaign.out / "migrate-ping_link_mbit-100"
    fast = campaign.out / "migrate-ping_link_mbit-1000"
    result = compare([load_arm(slow), load_arm(fast)])
    total = result.row("migration.total_s")
    assert [cell.n for cell in total.arms] == [3, 3]
    a, b = total.arms
    assert a.mean is not None and b.mean is not None
    assert 0.07 <= b.mean / a.mean <= 0.15  # the copy is ~10x faster; set-up does not scale
    assert b.overlaps_first is False and b.change_pct is not None and b.change_pct < -80
    during = result.row("ping.rtt_ms.during", None)  # the guest suffers less, too
    assert during.arms[1].overlaps_first is False
    code, out = cli("compare", str(slow), str(fast))
    assert code == 0
    block = out.split("migration.total_s (s)")[1].split("\n\n")[0]
    assert re.search(r"2\s+3\s+11\.\d\d.*-8\d\.\d%\s+NO", block), block


def test_compare_of_two_seeds_of_one_lab_shows_overlapping_intervals(
    tmp_path: Path,
) -> None:
    file = tmp_path / "seeds.toml"
    file.write_text(SEEDS, encoding="utf-8")
    out = tmp_path / "out"
    code, printed = cli("campaign", str(file), "--sim", "--speed", "1000", "--out", str(out))
    assert code == 0, printed
    one, other = out / "migrate-ping_seed-0", out / "migrate-ping_seed-1000"
    result = compare([load_arm(one), load_arm(other)])
    for metric in ("ping.rtt_ms.baseline", "ping.rtt_ms.during", "ping.rtt_ms.after"):
        row = result.row(metric, None)
        first, second = row.arms
        assert first.n == second.n == 3
        assert second.overlaps_first is True, (metric, first, second)
    # Different seeds really are different runs: the readings differ, the means agree.
    assert load_arm(one).values != load_arm(other).values
    total = result.row("migration.total_s")
    assert total.arms[1].overlaps_first is True
