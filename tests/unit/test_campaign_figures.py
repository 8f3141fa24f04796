"""Figures for a paper, read back from the SVG they are: the shaded migration window, the
phase means, the axis labels, the legend and the provenance; and who imports matplotlib."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from backend import __version__
from backend.experiments.compare import compare, load_arm
from backend.experiments.figures import COLUMN_IN, TIME_LABEL, comparison_figures, report_figures
from backend.experiments.report import load_report
from tests.support.report_logs import T0, Shape, write_log

SVG = "{http://www.w3.org/2000/svg}"
DC = "{http://purl.org/dc/elements/1.1/}"
CC = "{http://creativecommons.org/ns#}"


def texts(root: ET.Element) -> list[str]:
    return ["".join(element.itertext()).strip() for element in root.iter(f"{SVG}text")]


def by_id(root: ET.Element, prefix: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("id", "").startswith(prefix)]


@pytest.fixture(scope="module")
def session_figures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("figures")
    log = write_log(directory / "s.jsonl", Shape(seed=3, round_trip=True, seconds=40))
    return report_figures(load_report(log), directory / "out")


def test_a_session_gives_one_figure_per_probe_metric_in_three_formats(
    session_figures: list[Path],
) -> None:
    series = ("ping.rtt_ms", "sysbench-cpu.eps", "dbench.mb_per_s_1s", "dbench.latency_ms")
    assert sorted(p.name for p in session_figures) == sorted(
        f"migrate-combined-{name}.{fmt}" for name in series for fmt in ("png", "svg", "pdf")
    )
    assert all(p.stat().st_size > 1000 for p in session_figures)


def test_the_trace_shows_both_migration_windows_shaded_and_the_phase_means(
    session_figures: list[Path],
) -> None:
    svg = next(p for p in session_figures if p.name == "migrate-combined-ping.rtt_ms.svg")
    root = ET.parse(svg).getroot()
    # A round trip: two windows, each a filled patch in the plot.
    windows = by_id(root, "migration-window-")
    assert sorted(w.get("id") for w in windows) == ["migration-window-1", "migration-window-2"]
    assert all(w.find(f"{SVG}path") is not None for w in windows)
    for part in ("baseline", "during", "after"):
        assert by_id(root, f"{part}-mean"), part
    shown = texts(root)
    assert TIME_LABEL in shown and "network (ping rtt) (ms)" in shown
    (legend,) = by_id(root, "legend_")
    assert texts(legend) == [
        "network (ping rtt)",
        "migration",
        "baseline mean",
        "during mean",
        "after mean",
    ]
    width = root.get("width", "")
    assert width.endswith("pt") and float(width[:-2]) == pytest.approx(COLUMN_IN * 72)


def test_every_format_carries_its_provenance(session_figures: list[Path]) -> None:
    svg, png, pdf = (
        next(p for p in session_figures if p.name == f"migrate-combined-ping.rtt_ms{suffix}")
        for suffix in (".svg", ".png", ".pdf")
    )
    work = ET.parse(svg).getroot().find(f".//{CC}Work")
    assert work is not None
    meta = {e.tag.removeprefix(DC): "".join(e.itertext()).strip() for e in work}
    assert meta["title"].startswith("migrate-combined: network (ping rtt)")
    assert meta["creator"] == f"miglab {__version__}"
    # The session's start (the log's t0), not when the figure was drawn.
    assert meta["date"] == dt.datetime.fromtimestamp(T0, dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert "lab synthetic (simulated)" in meta["description"]
    assert meta["source"].endswith("s.jsonl")
    with Image.open(png) as image:
        info = dict(image.text)  # type: ignore[attr-defined]
    assert info["Software"] == f"miglab {__version__}" and info["Scenario"] == "migrate-combined"
    assert info["Lab"] == "synthetic (simulated)" and info["Measured"] == meta["date"]
    data = pdf.read_bytes()
    assert f"/Creator (miglab {__version__})".encode() in data
    assert b"/Subject (scenario migrate-combined; lab synthetic" in data


def test_a_comparison_draws_bars_with_ci_whiskers(tmp_path: Path) -> None:
    one = write_log(tmp_path / "a.jsonl", Shape(seed=1, repetitions=3, seconds=30))
    two = write_log(tmp_path / "b.jsonl", Shape(seed=9, repetitions=3, seconds=30))
    written = comparison_figures(compare([load_arm(one), load_arm(two)]), tmp_path / "out")
    names = sorted(p.name for p in written if p.suffix == ".svg")
    series = ("ping.rtt_ms", "sysbench-cpu.eps", "dbench.mb_per_s_1s", "dbench.latency_ms")
    migration = ("total_s", "downtime_ms", "unreachable_s")
    assert names == sorted(
        [
            *(f"compare-migration.{name}-1.svg" for name in migration),
            *(f"compare-{name}.during_change_pct.svg" for name in series),
        ]
    )
    root = ET.parse(tmp_path / "out" / "compare-migration.total_s-1.svg").getroot()
    assert by_id(root, "means") and by_id(root, "ci-whiskers")
    shown = texts(root)
    assert "migration time (s)" in shown and {"a", "b"} <= set(shown)
    (legend,) = by_id(root, "legend_")
    assert texts(legend) == ["mean", "95% CI"]


def test_only_the_figures_and_compare_paths_import_the_heavy_libraries() -> None:
    """The console's start-up (and every command's parser) pays for none of them.

    (Pillow is left out: plotext imports it whenever it is installed, and matplotlib
    installs it. Measured: 15 to 100 ms on plotext's import on this machine.)"""
    code = (
        "import sys, tui.cli, tui.app\n"
        "tui.cli._parser()\n"
        "import backend.experiments.figures, backend.experiments.compare\n"
        "import backend.experiments.results, backend.experiments.campaign\n"
        "heavy = ('matplotlib', 'scipy', 'duckdb', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr


def test_the_reports_t_table_agrees_with_scipy() -> None:
    """metrics.py's hand table (the report's CI) and scipy (compare's) give one interval."""
    from scipy import stats

    from backend.experiments.metrics import t_quantile_975

    for df in range(1, 301):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4), df


@pytest.mark.parametrize(
    ("metric", "unit", "migration", "label"),
    [
        ("migration.total_s", "s", 1, "migration time (s)"),
        ("migration.downtime_ms", "ms", 2, "downtime (leg 2) (ms)"),
        ("ping.rtt_ms.baseline", "ms", None, "network (ping rtt), baseline (ms)"),
        (
            "sysbench-cpu.eps.during_change_pct",
            "%",
            None,
            "cpu (sysbench), change during\nmigration (%)",
        ),
        ("ping@xen1.rtt_ms.after", "ms", None, "network (ping rtt) @xen1, after\n(ms)"),
        ("something.new\x1b[31m", "", None, "something.new\\x1b[31m"),
    ],
)
def test_axis_labels_say_what_a_reader_knows(
    metric: str, unit: str, migration: int | None, label: str
) -> None:
    from backend.experiments.figures import metric_label

    assert metric_label(metric, unit, migration) == label
