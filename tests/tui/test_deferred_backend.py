"""The console draws its first frame before its lab starts (tui/deferred_backend.py).

The backend behind the deferred one is the real live backend on the simulated lab; the
test holds its making back (a gate) to look at the console in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from backend.events import CommandStarted, Event, StorageExported
from backend.sim.lab import SimulatedLab
from backend.sim.study import study_lab, study_lab_data
from tests.support.waiting import until
from tests.tui.conftest import main_screen, quit_console, started
from tests.tui.sim_backend import SPEED, bound_textual_idle_wait, slow_console_ping
from tests.tui.test_flows import kept_toasts
from tui.app import MiglabApp
from tui.backend_api import ActionRefused, ConsoleBackend, LabLayout
from tui.commands import demo
from tui.deferred_backend import DeferredBackend
from tui.live_backend import make_backend
from tui.widgets.panes import HostPane
from tui.widgets.status import StatusBar


class Gated:
    """Makes the live backend on a simulated lab once the gate opens."""

    def __init__(self, log_path: Path) -> None:
        self.gate = asyncio.Event()
        self.log_path = log_path
        self.sim: SimulatedLab | None = None
        self.closed = False

    async def make(
        self, session_start: float, cleanup: contextlib.AsyncExitStack
    ) -> ConsoleBackend:
        await self.gate.wait()
        sim = await SimulatedLab.open(speed=SPEED, epoch=session_start)
        self.sim = sim

        async def close() -> None:
            await sim.close()
            self.closed = True

        cleanup.push_async_callback(close)
        lab = slow_console_ping(sim.lab_config)
        return make_backend(
            lab,
            readonly=False,
            simulated=True,
            sim=sim,
            log_path=self.log_path,
            quick=True,
            session_start=session_start,
        )


def deferred(gated: Gated) -> DeferredBackend:
    layout = LabLayout.from_lab_dump(study_lab_data())
    return DeferredBackend(layout, gated.make, simulated=True, readonly=False)


async def test_the_console_is_drawn_and_takes_keys_before_its_lab_has_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound_textual_idle_wait(monkeypatch)
    gated = Gated(tmp_path / "session.jsonl")
    backend = deferred(gated)
    seen: list[Event] = []
    backend.subscribe(seen.append)  # before the real backend exists: handed on later
    app = MiglabApp(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # The first frame: the lab's hosts and the SIMULATED badge, no lab behind them.
        titles = [str(pane.border_title) for pane in app.screen.query(HostPane)]
        assert titles == ["xenserver1", "xenserver2"], titles
        assert "SIMULATED" in str(app.screen.query_one(StatusBar).render())
        assert backend.inner is None and backend.session_log is None
        assert backend.clock() == backend.session_start  # the session's clock waits too
        with pytest.raises(ActionRefused, match="still starting"):
            backend.scenarios()
        # A key pressed now is not lost: the action waits for the lab, then runs.
        await pilot.press("p")
        await pilot.pause()
        assert not any(isinstance(e, CommandStarted) for e in seen)
        gated.gate.set()
        await started(app)
        assert backend.inner is not None
        assert backend.clock() >= backend.session_start
        await until(lambda: main_screen(app).running is None)  # "prepare" done
        assert any(
            isinstance(e, CommandStarted) and e.host == "iSCSIserver" and e.argv[0] == "ietadm"
            for e in seen
        )
        assert any(isinstance(e, StorageExported) for e in seen)
        assert [s.id for s in backend.scenarios()][:1] == ["disk-iscsi-vs-local"]
        await quit_console(app, pilot)
    assert gated.closed  # the simulated lab closed with the backend
    log = backend.session_log
    assert log == tmp_path / "session.jsonl" and log.exists()


async def test_a_lab_that_cannot_start_fails_its_actions_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound_textual_idle_wait(monkeypatch)

    async def refuse(*args: object, **kwargs: object) -> SimulatedLab:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(SimulatedLab, "open", refuse)
    async with demo.open_demo(speed=SPEED, quick=True, log_dir=tmp_path) as app:
        shown = kept_toasts(app)  # before it runs: the failure is told right after a frame
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await started(app)
            backend = app.backend
            assert isinstance(backend, DeferredBackend)
            error = backend.start_error
            assert isinstance(error, demo.DemoUnavailable)
            assert "cannot start the simulated lab" in str(error)
            assert "Address already in use" in str(error)
            await until(lambda: any("cannot start the simulated lab" in t for t in shown))
            with pytest.raises(demo.DemoUnavailable):
                await backend.prepare()
            await quit_console(app, pilot)
    assert list(tmp_path.iterdir()) == []  # no session log for a lab that never ran


async def test_closing_while_the_lab_starts_waits_for_it_and_closes_it(tmp_path: Path) -> None:
    gated = Gated(tmp_path / "session.jsonl")
    backend = deferred(gated)
    starting = asyncio.create_task(backend.start())
    await asyncio.sleep(0)
    closing = asyncio.create_task(backend.close())
    await asyncio.sleep(0)
    assert not closing.done()  # it waits for the making under way
    gated.gate.set()
    await asyncio.wait_for(asyncio.gather(starting, closing), 60)
    assert gated.closed and gated.sim is not None


def test_the_study_layout_read_as_plain_toml_is_the_checked_one() -> None:
    assert LabLayout.from_lab_dump(study_lab_data()) == LabLayout.from_config(study_lab())


def test_the_first_frame_loads_no_lab_machinery() -> None:
    """What `miglab demo` imports before its first frame: not the SSH stack, the plots, the
    config models, the scenarios or the simulated lab (they load after it)."""
    heavy = (
        "asyncssh",
        "plotext",
        "backend.config",
        "backend.experiments.scenarios",
        "backend.sim.lab",
        "tui.live_backend",
    )
    code = (
        "import sys, tui.cli, tui.commands.demo, tui.app, tui.screens.main; "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
