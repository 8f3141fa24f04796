"""plotext drawn into segments: exactly the size asked, colours as given, no background."""

from __future__ import annotations

import math

import pytest

from tui.widgets.plot import plot_colors, sparkline
from tui.widgets.plotext_render import PlotColors, ansi_to_lines, render_trace
from tui.widgets.traces import TraceView, time_ticks

COLOURS = PlotColors(
    line=(97, 175, 239), loss=(255, 107, 107), window=(224, 168, 79), text=(127, 135, 149)
)


def view() -> TraceView:
    xs = [i * 0.5 for i in range(60)]
    ys = [0.3 + 0.1 * math.sin(x) for x in xs]
    ys[40] = 63.0
    return TraceView(
        "ping RTT  0.31 ms  lost 2", "ms", xs, ys, [20.0, 20.5], (0.0, 30.0), [(18.0, 21.0)]
    )


@pytest.mark.parametrize(("width", "height"), [(38, 6), (78, 10), (158, 20)])
def test_a_plot_fills_exactly_the_widget(width: int, height: int) -> None:
    lines = render_trace(view(), width, height, COLOURS)
    assert len(lines) == height
    for line in lines:
        assert sum(len(segment.text) for segment in line) == width


def test_the_plot_shows_title_trace_losses_and_window() -> None:
    lines = render_trace(view(), 78, 12, COLOURS)
    text = "\n".join("".join(s.text for s in line) for line in lines)
    assert "ping RTT  0.31 ms  lost 2" in text
    ticks = [float(line.split("┤")[0]) for line in text.split("\n") if "┤" in line]
    assert max(ticks) >= 63.0  # the y axis reaches the spike
    styles = {
        s.style.color.triplet.hex
        for line in lines
        for s in line
        if s.style and s.style.color and s.style.color.triplet
    }
    assert "#61afef" in styles and "#ff6b6b" in styles and "#e0a84f" in styles
    for line in lines:
        for segment in line:
            assert segment.style is None or segment.style.bgcolor is None


def test_monochrome_plots_carry_no_colour() -> None:
    lines = render_trace(view(), 60, 8, PlotColors(None, None, None, None))
    assert all(s.style is None or s.style.color is None for line in lines for s in line)


def test_an_empty_trace_still_draws_axes() -> None:
    empty = TraceView("dbench", "MB/s", x_range=(0.0, 10.0))
    lines = render_trace(empty, 40, 6, COLOURS)
    assert len(lines) == 6 and "dbench" in "".join(s.text for s in lines[0])


def test_ansi_is_split_into_styled_segments() -> None:
    lines = ansi_to_lines("\x1b[0m\x1b[38;2;1;2;3m\x1b[48;5;15mab\x1b[0m cd\nx")
    (first, second) = lines
    assert [s.text for s in first] == ["ab", " cd"]
    assert first[0].style is not None and first[0].style.color is not None
    assert first[0].style.color.triplet is not None
    assert first[0].style.color.triplet.hex == "#010203" and first[0].style.bgcolor is None
    assert first[1].style is None and second[0].text == "x"


def test_sparkline_and_theme_colours() -> None:
    assert sparkline([0.0, 1.0, 2.0, 4.0], 10) == "▁▃▅█"
    assert sparkline([0.0, 0.0], 10) == "▁▁"
    variables = {
        "trace-ping": "#61afef",
        "trace-loss": "#ff6b6b",
        "trace-window": "#e0a84f",
        "trace-axes": "#7f8795",
        "trace-other": "#abb2bf",
    }
    assert plot_colors(variables, "ping", monochrome=False).line == (97, 175, 239)
    assert plot_colors(variables, "fio", monochrome=False).line == (171, 178, 191)
    assert plot_colors(variables, "ping", monochrome=True) == PlotColors(None, None, None, None)


def test_the_time_axis_reads_as_session_time_not_thousands_of_seconds() -> None:
    hour_in = TraceView("ping RTT", "ms", [3600.0 + i for i in range(120)], [0.3] * 120)
    hour_in.x_range = (3600.0, 3720.0)
    text = "\n".join(
        "".join(s.text for s in line) for line in render_trace(hour_in, 78, 10, COLOURS)
    )
    axis = text.split("\n")[-1]
    assert "1:00:00" in axis and "1:01:00" in axis and "3600" not in axis


@pytest.mark.parametrize(
    ("lo", "hi", "most", "labels"),
    [
        (0.0, 10.0, 6, ["0:00", "0:02", "0:04", "0:06", "0:08", "0:10"]),
        (95.0, 400.0, 4, ["2:00", "4:00", "6:00"]),
        (3599.0, 3725.0, 3, ["1:00:00", "1:02:00"]),
    ],
)
def test_ticks_fall_on_round_times(lo: float, hi: float, most: int, labels: list[str]) -> None:
    positions, got = time_ticks(lo, hi, most)
    assert got == labels
    assert len(positions) <= most and all(lo <= x <= hi for x in positions)
