"""Fixtures for the console's tests: a recorded session, replays of it, a running console."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.support.waiting import until
from tests.tui.session_fixture import write_session
from tui.app import MiglabApp
from tui.backend_api import ConsoleBackend
from tui.replay import ReplayBackend
from tui.screens.main import MainScreen
from tui.widgets.plot import TraceGrid


@pytest.fixture
async def session_log(tmp_path: Path) -> Path:
    """The migrate-ping session, written by the project's session log writer."""
    return await write_session(tmp_path / "session.jsonl")


@pytest.fixture
def replay(session_log: Path) -> Callable[..., ReplayBackend]:
    def make(speed: float = 0.0) -> ReplayBackend:
        return ReplayBackend.open(session_log, speed=speed)

    return make


@asynccontextmanager
async def running(
    backend: ConsoleBackend, size: tuple[int, int] = (120, 40), theme: str | None = None
) -> AsyncIterator[tuple[MiglabApp, Pilot[int]]]:
    """The console on ``backend``, headless, at ``size``, once the backend has started."""
    app = MiglabApp(backend, theme=theme)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await started(app)
        yield app, pilot


async def started(app: MiglabApp) -> None:
    """Wait until the main screen is up and its backend's start() has returned (a live
    backend connects its hosts first: a key pressed before that finds none)."""
    await until(app.main_screens)
    starting = [w for w in app.workers if w.group == "backend"]
    await asyncio.gather(*(w.wait() for w in starting), return_exceptions=True)


async def quit_console(app: MiglabApp, pilot: Pilot[int]) -> None:
    """Press q and wait until the console has closed its backends (the session log is
    saved) and exits: leaving ``run_test`` earlier would stop the quit half way."""
    await pilot.press("q")
    await until(lambda: app.return_code is not None)


def main_screen(app: MiglabApp) -> MainScreen:
    screen = app.screen
    assert isinstance(screen, MainScreen), f"expected the main screen, got {screen!r}"
    return screen


async def drained(app: MiglabApp) -> None:
    """Wait until every event published so far is drawn: no batch waiting, no plot frame
    half done (polls state, with no deadline: a loaded machine only makes it slower)."""

    def idle() -> bool:
        screens = app.main_screens()
        grids = [s.query_one(TraceGrid) for s in screens if s.is_mounted]
        return not (
            any(s._pending or s._flush_scheduled for s in screens)
            or any(g._frame or any(p.dirty for p in g.plots.values()) for g in grids)
        )

    await until(idle)
    await asyncio.sleep(0.02)


async def settle(pilot: Pilot[int], replay: ReplayBackend | None = None) -> None:
    """Let the replay finish, the event batches land and the plots redraw."""
    if replay is not None:
        await replay.wait_finished()
    await drained(pilot.app)  # type: ignore[arg-type]
    await pilot.pause()


@asynccontextmanager
async def console_at_its_end(
    replay: ReplayBackend, *, size: tuple[int, int] = (120, 40), theme: str | None = None
) -> AsyncIterator[tuple[MiglabApp, Pilot[int], MainScreen]]:
    """The console on ``replay`` (headless, at ``size``, in ``theme``), with every event
    of the replay drawn."""
    async with running(replay, size=size, theme=theme) as (app, pilot):
        await settle(pilot, replay)
        yield app, pilot, main_screen(app)
