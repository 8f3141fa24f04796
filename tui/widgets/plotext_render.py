"""plotext 6 drawn into Rich segments, sized to a widget.

plotext builds a plot as a matrix of coloured cells and gives it out as ANSI text.
Rich's general ANSI decoder is slow for this (tens of ms per plot), and plotext's
output is regular: each run of cells is an SGR sequence then text. So the text is
split on SGR sequences here and each distinct sequence is turned into a Rich style
once (cached). Backgrounds are dropped: the widget's shows through everywhere.

plotext keeps one global figure; every plot is drawn on it in turn, on the UI
thread, so there is no sharing to worry about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from tui.widgets.traces import TraceView, time_ticks

RGB = tuple[int, int, int]
Lines = list[list[Segment]]

_SGR = re.compile(r"\x1b\[([0-9;]*)m")


@lru_cache(maxsize=1)
def _plotext() -> ModuleType:
    """plotext, imported on the first plot (it takes 0.3 s: not before the first frame)."""
    import plotext

    # Plots are sized to their widget, not to the terminal plotext would measure.
    plotext.terminal.limit(False, False)
    module: ModuleType = plotext
    return module


@dataclass(frozen=True)
class PlotColors:
    """The colours of one plot; ``None`` leaves a part uncoloured (monochrome screens)."""

    line: RGB | None
    loss: RGB | None
    window: RGB | None
    text: RGB | None

    @property
    def monochrome(self) -> bool:
        return self.line is None and self.loss is None and self.window is None and self.text is None


X_TICK_CELLS = 12
"""Room per x-axis label ("1:02:30" and a gap)."""

MIN_HEIGHT = 6
"""Below this many rows a plot has no room for its axes; the widget shows a summary."""


@lru_cache(maxsize=512)
def _style(codes: str) -> Style:
    spans = Text.from_ansi(f"\x1b[{codes}mX").spans
    parsed = spans[0].style if spans and isinstance(spans[0].style, Style) else Style()
    # Foreground and weight only: plotext paints some parts (its lines) on a white
    # background of its own, and the widget's background must show everywhere.
    return Style(color=parsed.color, bold=parsed.bold)


def ansi_to_lines(ansi: str) -> Lines:
    """plotext's ANSI output as lines of Rich segments."""
    lines: Lines = []
    for raw in ansi.removesuffix("\n").split("\n"):
        parts = _SGR.split(raw)
        segments: list[Segment] = []
        active: list[str] = []
        for index, part in enumerate(parts):
            if index % 2 == 0:
                if part:
                    style = _style(";".join(active)) if active else None
                    segments.append(Segment(part, style))
            elif part in ("", "0"):
                active = []
            else:
                active.append(part)
        lines.append(segments)
    return lines


@lru_cache(maxsize=16)
def _theme(text: RGB | None) -> str:
    """A plotext theme with no canvas colour and ``text`` for axes, ticks and title."""
    plt = _plotext()
    name = "miglab-plain" if text is None else "miglab-{}-{}-{}".format(*text)
    plt.add_theme(name, text=None if text is None else plt.pixel(text))
    return name


def _marker(symbol: str, colour: RGB | None) -> Any:
    plt = _plotext()
    return plt.marker(symbol, None if colour is None else plt.pixel(colour))


def render_trace(view: TraceView, width: int, height: int, colors: PlotColors) -> Lines:
    """Draw ``view`` as a plot of exactly ``width`` x ``height`` cells."""
    plt = _plotext()
    fig = plt.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme(_theme(colors.text))
    lo, hi = view.x_range
    fig.ruler("x").lim(lo, hi)
    fig.ruler("x").ticks(*time_ticks(lo, hi, most=max(2, width // X_TICK_CELLS)))
    top = max(view.ys) if view.ys else 1.0
    fig.ruler("y").lim(0, top * 1.05 if top > 0 else 1.0)
    if view.xs:
        signal = fig.signal(view.xs, view.ys, marker=_marker("braille", colors.line))
        signal.lines()
        fig.draw(signal)
    if view.losses:
        marks = fig.signal(view.losses, [top] * len(view.losses), marker=_marker("x", colors.loss))
        fig.draw(marks)
    window_pixel = None if colors.window is None else plt.pixel(colors.window)
    for start, end in view.windows:
        for x in (start, end):
            if lo <= x <= hi:
                fig.line(x, orientation="v", pixel=window_pixel)
    fig.title(view.title)
    # Monochrome: plotext would still colour what it is given no colour for.
    return ansi_to_lines(fig.build().string(colorless=colors.monochrome))
