"""Live trace plots: plotext drawn into widgets, redrawn at a bounded rate.

Samples only mark a plot dirty. One timer (20 Hz) redraws the dirty plots, one per
tick (so the event loop is never held for long), and shows them together (one screen
update rather than one per plot), no sooner than the last frame's drawing cost
allows: plotext drawing may take at most :data:`CPU_SHARE` of one core, and no plot
redraws more than :data:`MAX_FPS` times a second. With one
small plot that is the full 20 Hz; with four plots each fed 100 samples a second it
settles near 2 Hz. The console runs on the storage node, and CPU it takes is taken
from the iSCSI target; putting the frame on the terminal costs about as much again
as drawing it, which the share leaves room for.

A key press holds the plots for :data:`KEY_QUIET_S`: the frame that key changes goes
out without plot drawing before it or plot regions in it; the plots catch up after.

A plot too small for axes (under :data:`~tui.widgets.plotext_render.MIN_HEIGHT`
rows) shows its current value and a sparkline instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Container
from textual.events import Resize
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from tui.widgets import fmt
from tui.widgets.lab_state import LabState
from tui.widgets.plotext_render import MIN_HEIGHT, Lines, PlotColors, render_trace
from tui.widgets.safe_text import clean
from tui.widgets.traces import Trace

MAX_FPS = 20.0
CPU_SHARE = 0.05
"""Fraction of one core all plots together may spend drawing (plotext)."""

KEY_QUIET_S = 0.15
"""After a key press, no plot is drawn or shown for this long (see :meth:`TraceGrid.hold`)."""

_SPARK = "▁▂▃▄▅▆▇█"
# Width plotext takes for the y tick labels and the frame; the rest is canvas.
_AXIS_COLUMNS = 7

# Theme variable holding each probe's trace colour.
_COLOUR_VARIABLE = {
    "ping": "trace-ping",
    "sysbench-cpu": "trace-cpu",
    "sysbench-memory": "trace-memory",
    "dbench": "trace-disk",
    "build": "trace-build",
    "dirtier": "trace-dirtier",
}

Clock = Callable[[], float]


def _rgb(variables: dict[str, str], name: str) -> tuple[int, int, int] | None:
    value = variables.get(name)
    if value is None:
        return None
    try:
        colour = Color.parse(value)
    except Exception:  # a theme with a value Textual parses but Color does not
        return None
    return (colour.r, colour.g, colour.b)


def plot_colors(variables: dict[str, str], probe: str, monochrome: bool) -> PlotColors:
    """The colours of ``probe``'s plot in the current theme (none on a monochrome screen)."""
    if monochrome:
        return PlotColors(None, None, None, None)
    return PlotColors(
        line=_rgb(variables, _COLOUR_VARIABLE.get(probe, "trace-other")),
        loss=_rgb(variables, "trace-loss"),
        window=_rgb(variables, "trace-window"),
        text=_rgb(variables, "trace-axes"),
    )


def sparkline(values: list[float], width: int) -> str:
    """``values`` (already one per column) as block characters scaled to their max."""
    values = values[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return _SPARK[0] * len(values)
    last = len(_SPARK) - 1
    return "".join(_SPARK[min(last, int(v / top * last + 0.5))] for v in values)


class TracePlot(Widget):
    """One trace, drawn by plotext at the widget's size."""

    DEFAULT_CSS = """
    TracePlot {
        height: 1fr;
        min-height: 2;
    }
    """

    def __init__(self, trace: Trace, state: LabState, clock: Clock) -> None:
        super().__init__(classes="trace-plot")
        self.trace = trace
        self._state = state
        self._clock = clock
        self._lines: Lines = []
        self._strips: list[Strip] = []
        self._built: list[Strip] | None = None
        self.plot_colors = PlotColors(None, None, None, None)
        self.dirty = True
        self.cost_s = 0.0
        self.renders = 0
        self.plot_title = ""

    def on_resize(self, event: Resize) -> None:
        self.dirty = True
        if isinstance(self.parent, TraceGrid):
            self.parent.next_frame = 0.0  # a new size shows at once

    def mark_dirty(self) -> None:
        self.dirty = True

    def _title(self) -> str:
        trace = self.trace
        # A host's name from a log is text: plotext would pass an escape in it through.
        title = clean(self._state.label(trace))
        if trace.last_value is not None:
            title += f"  {fmt.number(trace.last_value, trace.unit)}"
        if trace.probe == "ping" or trace.lost:
            title += f"  lost {trace.lost}"
        return title

    def redraw(self) -> None:
        """Build the plot now at the widget's content size and show it."""
        self.build()
        self.commit()

    def build(self) -> None:
        """Draw the plot at the widget's content size, to be shown by :meth:`commit`."""
        width, height = self.content_size
        self.dirty = False
        if width < 8 or height < 1:
            return
        state = self._state
        self.plot_title = self._title()
        columns = max(width - _AXIS_COLUMNS, 2)
        view = self.trace.view(
            state.t0, self._clock(), columns, list(state.windows), self.plot_title
        )
        if height >= MIN_HEIGHT:
            self._lines = render_trace(view, width, height, self.plot_colors)
        else:
            line_style = None
            if self.plot_colors.line is not None:
                line_style = Style(color="rgb({},{},{})".format(*self.plot_colors.line))
            summary = [Segment(fmt.ellipsize(self.plot_title, width))]
            spark = [Segment(sparkline(view.ys, width), line_style)]
            self._lines = [summary, spark][:height] if height > 1 else [summary]
        self._built = [Strip(line).crop_extend(0, width, None) for line in self._lines]
        self.renders += 1

    def commit(self) -> None:
        """Show what :meth:`build` drew."""
        if self._built is not None:
            self._strips, self._built = self._built, None
            self.refresh()

    def render_line(self, y: int) -> Strip:
        style = self.rich_style
        if y >= len(self._strips):
            return Strip.blank(self.content_size.width, style)
        # Strip caches the styled copy: a repaint without a redraw costs a lookup.
        return self._strips[y].apply_style(style)


class TraceGrid(Container):
    """The plots, one per trace, in a grid; redraws the dirty ones within a CPU budget."""

    BLANK = True  # only its background shows (the gutter): one line, not one per row

    DEFAULT_CSS = """
    TraceGrid {
        layout: grid;
        grid-size: 2;
        grid-gutter: 0 1;
        height: 1fr;
    }
    TraceGrid.-n1 { grid-size: 1; }
    TraceGrid > #no-traces { column-span: 2; }
    """

    def __init__(self, state: LabState, clock: Clock, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state = state
        self._clock = clock
        self.plots: dict[tuple[str, str], TracePlot] = {}
        self.monochrome = False
        self.next_frame = 0.0
        self._frame: list[TracePlot] = []  # plots still to draw in this frame
        self._frame_cost = 0.0
        self._held_until = 0.0

    def compose(self) -> ComposeResult:
        yield Static(
            "[$text-muted]No traces yet: they appear when a probe reports.[/]", id="no-traces"
        )

    def on_mount(self) -> None:
        self.set_interval(1 / MAX_FPS, self._tick, name="plot redraw")

    def add_trace(self, key: tuple[str, str]) -> None:
        if key in self.plots:
            return
        trace = self._state.traces.traces[key]
        plot = TracePlot(trace, self._state, self._clock)
        plot.plot_colors = self._colors_for(trace.probe)
        self.plots[key] = plot
        self.query("#no-traces").remove()
        self.mount(plot)
        self.set_class(len(self.plots) == 1, "-n1")

    def mark_dirty(self, keys: set[tuple[str, str]] | None = None) -> None:
        for key, plot in self.plots.items():
            if keys is None or key in keys:
                plot.dirty = True

    def recolor(self) -> None:
        for plot in self.plots.values():
            plot.plot_colors = self._colors_for(plot.trace.probe)
            plot.dirty = True
        self.next_frame = 0.0  # a new theme shows at once

    def hold(self, seconds: float = KEY_QUIET_S) -> None:
        """Draw and show no plot for ``seconds``: a key's own frame comes first."""
        self._held_until = max(self._held_until, time.monotonic() + seconds)

    @property
    def held(self) -> bool:
        return time.monotonic() < self._held_until

    def _colors_for(self, probe: str) -> PlotColors:
        return plot_colors(self.app.theme_variables, probe, self.monochrome)

    def _tick(self) -> None:
        """Draw one plot of the frame per tick; show the frame when all are drawn.

        One plot at a time keeps the event loop free for keys (a plot takes a few ms,
        four take tens); showing them together keeps it one screen update.
        """
        if not self.plots or not self.display or self.held:
            return
        if not self._frame:
            if time.monotonic() < self.next_frame:
                return
            self._frame = [plot for plot in self.plots.values() if plot.dirty]
            self._frame_cost = 0.0
            if not self._frame:
                return
        plot = self._frame.pop(0)
        began = time.perf_counter()
        plot.build()
        plot.cost_s = time.perf_counter() - began
        self._frame_cost += plot.cost_s
        if not self._frame:
            for drawn in self.plots.values():
                drawn.commit()
            interval = max(1 / MAX_FPS, self._frame_cost / CPU_SHARE)
            self.next_frame = time.monotonic() + interval
