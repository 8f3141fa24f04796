"""A key press holds the plots for a moment (its own frame goes out first); they then
show the latest data, however many keys came and however many samples meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from backend.events import Event, Sample
from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end, main_screen, running, settle
from tests.tui.test_fast_keys import send_keys_fast
from tui.replay import ReplayBackend
from tui.screens.main import EventsArrived
from tui.widgets.plot import TraceGrid, TracePlot

Replay = Callable[..., ReplayBackend]


def ping_plot(grid: TraceGrid) -> TracePlot:
    [plot] = [plot for (probe, _host), plot in grid.plots.items() if probe == "ping"]
    return plot


def pings(t: float, host: str, rtts: list[float]) -> list[Event]:
    return [
        Sample(
            t=t + n * 0.1, probe="ping", host=host, unit={"rtt_ms": "ms"},
            values={"seq": 1000 + n, "rtt_ms": rtt},
        )
        for n, rtt in enumerate(rtts)
    ]  # fmt: skip


async def test_a_key_press_holds_the_plots(replay: Replay) -> None:
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        grid = main_screen(app).query_one(TraceGrid)
        assert grid._held_until == 0.0  # no key yet
        await pilot.press("i")
        assert grid._held_until > 0.0


async def test_held_plots_draw_nothing_then_show_the_latest_sample(replay: Replay) -> None:
    backend = replay()
    async with console_at_its_end(backend) as (_app, _pilot, screen):
        grid = screen.query_one(TraceGrid)
        plot = ping_plot(grid)
        host = plot.trace.host
        grid.hold(3600.0)  # as if keys kept coming
        renders = plot.renders
        t = backend.session.events[-1].t
        screen.post_message(EventsArrived(pings(t, host, [0.5, 7.25])))
        await until(lambda: plot.trace.last_value == 7.25 and plot.dirty)
        for _ in range(5):
            grid._tick()
        assert plot.renders == renders and plot.dirty  # held: nothing drawn
        assert "7.25" not in plot.plot_title
        grid._held_until = 0.0  # the keys stopped
        await until(lambda: "7.25" in plot.plot_title and not plot.dirty)
        assert plot.renders > renders


async def test_after_a_burst_of_keys_the_plots_show_the_last_sample(replay: Replay) -> None:
    backend = replay()
    async with console_at_its_end(backend) as (app, pilot, screen):
        grid = screen.query_one(TraceGrid)
        plot = ping_plot(grid)
        t = backend.session.events[-1].t
        rtts = [1.0 + n / 100 for n in range(50)] + [9.5]
        screen.post_message(EventsArrived(pings(t, plot.trace.host, rtts)))
        await send_keys_fast(app, ["up", "down"] * 100)
        await until(lambda: plot.trace.last_value == 9.5)
        await until(lambda: "9.5" in plot.plot_title and not plot.dirty)
        await pilot.press("up")  # after every key of the burst: all of them taken
        assert app._exception is None
