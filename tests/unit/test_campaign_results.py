"""`miglab results` and `miglab compare` on logs that are not a campaign's: the columns a
plain log gives, a log cut short, and the bad inputs (exit 2, one paragraph)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from backend.experiments.compare import compare, load_arm
from backend.experiments.results import COLUMNS, find_logs, result_rows, write_csv
from tests.support.report_logs import Shape, write_log
from tui import cli


def rows_of(*logs: Path) -> list[dict[str, str]]:
    out = io.StringIO()
    write_csv(result_rows(list(logs)), out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_a_plain_log_has_its_run_columns_and_empty_campaign_ones(tmp_path: Path) -> None:
    log = write_log(tmp_path / "one.jsonl", Shape(seed=1, repetitions=2, seconds=30))
    rows = rows_of(log)
    assert list(rows[0]) == list(COLUMNS)
    assert {r["campaign"] for r in rows} == {""} and {r["run_group"] for r in rows} == {""}
    assert {r["lab"] for r in rows} == {"synthetic"} and {r["status"] for r in rows} == {"ok"}
    assert {r["repetition"] for r in rows} == {"1", "2"}
    totals = [r for r in rows if r["metric"] == "migration.total_s"]
    assert [(r["repetition"], r["migration"], r["unit"]) for r in totals] == [
        ("1", "1", "s"),
        ("2", "1", "s"),
    ]
    assert all(float(r["value"]) > 0 for r in totals)
    # Not in the log, so not in the table: an empty cell, never a guess.
    assert {r["link_mbit"] for r in rows} == {""} and {r["seed"] for r in rows} == {""}
    probe = [r for r in rows if r["metric"] == "ping.rtt_ms.during_change_pct"]
    assert len(probe) == 2 and {r["unit"] for r in probe} == {"%"}
    assert {r["migration"] for r in probe} == {""}


def test_a_log_cut_short_says_so_in_every_row(tmp_path: Path) -> None:
    log = write_log(tmp_path / "cut.jsonl", Shape(seed=6, repetitions=2, seconds=30, cut=True))
    assert {r["status"] for r in rows_of(log)} == {"cut short"}


def test_folders_are_searched_for_logs_in_order(tmp_path: Path) -> None:
    for name in ("b/r1.jsonl", "a/r2.jsonl", "a/r1.jsonl"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_log(tmp_path / name, Shape(seed=1, seconds=20))
    (tmp_path / "a" / "r3.jsonl.incomplete-1").write_text("kept aside\n")
    found = [p.relative_to(tmp_path).as_posix() for p in find_logs([tmp_path])]
    assert found == ["a/r1.jsonl", "a/r2.jsonl", "b/r1.jsonl"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["results", "{log}", "-o", "{tmp}/r.xlsx"], "r.xlsx: write a .csv or a .parquet file"),
        (["results", "{tmp}/none.jsonl", "-o", "{tmp}/r.csv"], "none.jsonl: no such session log"),
        (["results", "{tmp}/empty", "-o", "{tmp}/r.csv"], "no session logs (*.jsonl) in"),
        (["results", "{tmp}/bad.jsonl", "-o", "{tmp}/r.csv"], "bad.jsonl:1: not a miglab session"),
        (["compare", "{log}"], "compare needs two arms at least"),
        (["compare", "{log}", "{tmp}/empty"], "empty: no session logs (*.jsonl) there"),
        (["compare", "{log}", "{tmp}/bad.jsonl"], "bad.jsonl:1: not a miglab session"),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    log = write_log(tmp_path / "one.jsonl", Shape(seed=1, seconds=20))
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text("hello\n")
    filled = [a.format(log=log, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exited:
        cli.main(filled)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_compare_json_has_every_arm_per_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write_log(tmp_path / "a.jsonl", Shape(seed=1, repetitions=3, seconds=30))
    two = write_log(tmp_path / "b.jsonl", Shape(seed=2, repetitions=3, seconds=30))
    with pytest.raises(SystemExit) as exited:
        cli.main(["compare", str(one), str(two), "--format", "json"])
    assert exited.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert [arm["label"] for arm in data["arms"]] == ["a", "b"]
    assert [arm["runs"] for arm in data["arms"]] == [3, 3]
    rtt = next(m for m in data["metrics"] if m["metric"] == "ping.rtt_ms.baseline")
    assert rtt["unit"] == "ms" and rtt["migration"] is None
    first, second = rtt["arms"]
    assert first["n"] == second["n"] == 3
    assert first["change_pct"] == 0 and first["overlaps_first"] is True
    assert first["ci95"][0] < first["mean"] < first["ci95"][1]
    assert isinstance(second["p_welch"], float) and 0 <= second["p_welch"] <= 1


def test_the_interval_is_students_t_and_overlap_is_of_the_intervals(tmp_path: Path) -> None:
    """Checked against numbers worked by hand: values 1, 2, 3 -> mean 2, s = 1,
    half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138."""
    from backend.experiments.compare import Arm

    key = ("migration.total_s", 1)
    a = Arm("a", (), values={key: [1.0, 2.0, 3.0]}, units={key: "s"})
    b = Arm("b", (), values={key: [5.0, 6.0, 7.0]}, units={key: "s"})
    c = Arm("c", (), values={key: [10.0, 10.5, 11.0]}, units={key: "s"})
    row = compare([a, b, c]).row("migration.total_s")
    first, second, third = row.arms
    assert first.ci95 == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert second.overlaps_first is True  # 4.48 .. reaches 2.52 .. 7.48
    assert third.overlaps_first is False
    assert second.change_pct == pytest.approx(200.0)
    assert third.p_welch is not None and third.p_welch < 0.01


def test_arms_from_the_same_logs_compare_equal(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.jsonl", Shape(seed=1, repetitions=3, seconds=30))
    row = compare([load_arm(log), load_arm(log)]).row("migration.total_s")
    assert row.arms[1].change_pct == 0 and row.arms[1].overlaps_first is True


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("duckdb", ["results", "{log}", "-o", "{tmp}/r.parquet"], "pip install 'miglab[parquet]'"),
        ("scipy", ["compare", "{log}", "{log}"], "pip install 'miglab[stats]'"),
        (
            "matplotlib",
            ["report", "{log}", "--figures", "{tmp}/f"],
            "pip install 'miglab[figures]'",
        ),
    ],
)
def test_without_an_optional_extra_the_command_says_which_to_install(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    argv: list[str],
    message: str,
) -> None:
    log = write_log(tmp_path / "one.jsonl", Shape(seed=1, seconds=20))
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails
    with pytest.raises(SystemExit) as exited:
        cli.main([a.format(log=log, tmp=tmp_path) for a in argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
