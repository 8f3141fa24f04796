"""One probe's readings over time as a text plot (plotext), the migration windows shaded.

``miglab report`` prints it; the console draws the same string in a widget sized
to it (with ``colors=True`` the string carries ANSI colours: ``Text.from_ansi``).
plotext keeps one global figure, so every call holds :data:`FIGURE_LOCK`; any
other code that draws on ``plotext.figure`` in the same process and may run in
another thread should hold it too.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterable, Sequence

import plotext

__all__ = ["FIGURE_LOCK", "MIN_HEIGHT", "MIN_WIDTH", "SHADE", "probe_plot"]

SHADE = "░"
"""The character that fills a migration window."""

MIN_WIDTH = 30
MIN_HEIGHT = 6

FIGURE_LOCK = threading.Lock()
"""Held while ``plotext.figure`` is being drawn on."""


def probe_plot(
    series: Iterable[tuple[float, float]],
    window: Sequence[tuple[float, float]],
    width: int,
    height: int,
    colors: bool,
    *,
    title: str = "",
    xlabel: str = "",
) -> str:
    """``series`` (x, y) as a line plot of ``width`` x ``height`` cells, as text.

    ``window``: the migration windows (start, end) on the same x axis, shaded with
    :data:`SHADE` behind the line. No colours unless ``colors``. With no point to
    draw, a one-line note instead of an empty frame.
    """
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"a plot needs at least {MIN_WIDTH}x{MIN_HEIGHT} cells")
    xs, ys = array("d"), array("d")
    for x, y in series:
        if math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    if not xs:
        return f"{title}: no readings" if title else "no readings"
    if len(xs) > _THIN_ABOVE * width:
        xs, ys = _thin(xs, ys, bins=4 * width)
    spans = [(a, b) for a, b in window if b >= a]
    x_lo = min(min(xs), *(a for a, _ in spans)) if spans else min(xs)
    x_hi = max(max(xs), *(b for _, b in spans)) if spans else max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = _y_range(min(ys), max(ys))
    heading = f"{title}  {SHADE} migrating" if spans and title else title
    with FIGURE_LOCK:
        figure = plotext.figure
        figure.clear()
        figure.theme("simple" if colors else "colorless")
        figure.plot_size(width, height)
        figure.ruler("x").lim(x_lo, x_hi)
        figure.ruler("y").lim(y_lo, y_hi)
        # Columns filled from the top down to the axis; one point per half cell.
        cells = max(2, width * 2)
        for start, end in spans:
            n = max(2, math.ceil(cells * (end - start) / (x_hi - x_lo)) + 1)
            shade_x = [start + (end - start) * i / (n - 1) for i in range(n)]
            shade = figure.signal(shade_x, [y_hi] * n, marker=SHADE)
            shade.fillx()
            figure.draw(shade)
        line = figure.signal(xs, ys)
        line.lines()
        figure.draw(line)
        if heading:
            figure.title(heading)
        if xlabel:
            figure.label(xlabel, axis="x")
        text: str = figure.build().string(colorless=not colors)
        figure.clear()
    return "\n".join(row.rstrip() for row in text.split("\n")) if not colors else text


_THIN_ABOVE = 16
"""Points per cell column above which a series is thinned before plotting."""


def _thin(xs: array[float], ys: array[float], bins: int) -> tuple[array[float], array[float]]:
    """At most four points per bin of x (first, lowest, highest, last, in their order):
    the line a plot this wide can draw looks the same, and plotting takes no longer for
    a million points than for a thousand."""
    lo, hi = min(xs), max(xs)
    scale = (bins - 1) / (hi - lo) if hi > lo else 0.0
    keep: list[int] = []
    current = -1
    first = low = high = last = 0
    for i, x in enumerate(xs):
        b = int((x - lo) * scale)
        if b != current:
            if current >= 0:
                keep.extend(sorted({first, low, high, last}))
            current, first, low, high = b, i, i, i
        elif ys[i] < ys[low]:
            low = i
        elif ys[i] > ys[high]:
            high = i
        last = i
    keep.extend(sorted({first, low, high, last}))
    return array("d", (xs[i] for i in keep)), array("d", (ys[i] for i in keep))


def _y_range(lo: float, hi: float) -> tuple[float, float]:
    """Data range with a margin, so the line does not ride the frame; a flat line gets room."""
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
    else:
        pad = (hi - lo) * 0.05
    low = lo - pad
    if lo >= 0 > low:
        low = 0.0  # rates and latencies are never negative: do not show a negative axis
    return low, hi + pad
