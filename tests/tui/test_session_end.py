"""The console's session log ends saying what happened: ok, failed, interrupted, crashed.

On the simulated lab (the real backend over SSH, tests/tui/sim_backend.py): quitting
after the work is done ends "ok"; after an operation failed, "failed"; quitting during
a migration stops it and ends "interrupted"; an unhandled error in the console ends
"crashed", written before the app is gone. And a log whose disk fills stops what runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.session import read_session
from tests.integration.test_disk_full import fill, tmpfs
from tests.tui.conftest import main_screen, running, started
from tests.tui.sim_backend import bound_textual_idle_wait, sim_backend, simulated_lab
from tests.tui.test_flows import choose, dialog, finish_actions, workers_done
from tests.tui.test_markup_safety import running as running_with_toasts
from tui.app import MiglabApp, run_console_async

SLOW_SPEED = 5.0
"""Slow enough that the study's 90 s migration takes long enough to quit during it."""


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    bound_textual_idle_wait(monkeypatch)
    async with simulated_lab() as lab:
        yield lab


def end_status(log: Path) -> str | None:
    session = read_session(log)
    return None if session.end is None else str(session.end["status"])


async def quit_app(app: MiglabApp, pilot: Any) -> None:
    await pilot.press("q")
    await pilot.pause()
    await workers_done(app)


async def guest_running(sim: Any) -> None:
    for _ in range(600):  # the simulated boot takes 12 simulated seconds
        if sim.model.guest.status == "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the simulated guest did not come up")


async def prepare_and_boot(app: MiglabApp, pilot: Any, sim: Any) -> None:
    first = main_screen(app).backend.layout.hypervisor_hosts[0]
    await pilot.press("p")
    await finish_actions(app)
    await pilot.press("b")
    await pilot.pause()
    await choose(app, pilot, first)
    await finish_actions(app)
    await guest_running(sim)


async def test_quitting_after_the_work_is_done_ends_ok(sim: Any, tmp_path: Path) -> None:
    log = tmp_path / "console.jsonl"
    backend = sim_backend(sim, log)
    async with running(backend) as (app, pilot):
        await pilot.press("p")
        await finish_actions(app)
        await quit_app(app, pilot)
    assert end_status(log) == "ok"


async def test_quitting_after_a_failed_operation_ends_failed(sim: Any, tmp_path: Path) -> None:
    log = tmp_path / "console.jsonl"
    backend = sim_backend(sim, log, broken_login=True)
    async with running(backend) as (app, pilot):
        await pilot.press("p")  # the hosts' logins fail for real (iscsiadm's own error)
        await finish_actions(app)
        assert any("prepare failed" in n.title for n in app._notifications)
        await quit_app(app, pilot)
    assert end_status(log) == "failed"


async def test_quitting_during_a_migration_ends_interrupted(tmp_path: Path) -> None:
    log = tmp_path / "console.jsonl"
    async with simulated_lab(speed=SLOW_SPEED) as slow:
        backend = sim_backend(slow, log)
        async with running(backend) as (app, pilot):
            await prepare_and_boot(app, pilot, slow)
            screen = main_screen(app)
            await pilot.press("m")
            for _ in range(600):
                if screen.state.migration.active:
                    break
                await asyncio.sleep(0.02)
            assert screen.state.migration.active and screen.running is not None
            await pilot.press("q")
            await dialog(app, pilot)
            await pilot.press("y")
            await workers_done(app)
        assert backend.calls[-2:] == ["cancel", "close"]
    session = read_session(log)
    finished = session.of_kind("migration.finished")
    assert finished and not finished[-1].ok  # type: ignore[attr-defined]
    assert end_status(log) == "interrupted"


async def test_an_unhandled_error_in_the_console_ends_crashed(sim: Any, tmp_path: Path) -> None:
    log = tmp_path / "console.jsonl"
    backend = sim_backend(sim, log)
    app = MiglabApp(backend)

    def boom() -> None:
        raise RuntimeError("a bug in the console")

    async def crash_once_started() -> None:
        for _ in range(600):  # the backend has connected and started its log
            if log.exists() and not any(w.group == "backend" for w in app.workers):
                break
            await asyncio.sleep(0.05)
        await started(app)
        app.call_later(boom)

    crasher = asyncio.ensure_future(crash_once_started())
    code = await run_console_async(app, headless=True, size=(120, 40))
    await crasher
    assert code == 1
    assert backend.calls[-1] == "close"
    assert end_status(log) == "crashed"


async def test_a_full_disk_stops_the_running_scenario_and_refuses_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound_textual_idle_wait(monkeypatch)
    with tmpfs(tmp_path / "small", "256k") as small:
        log = small / "console.jsonl"
        async with simulated_lab() as lab:
            # No console ping: the scenario's own ping is what fills the disk, mid-run.
            backend = sim_backend(lab, log, hold_scenario=True, console_ping=False)
            async with running_with_toasts(backend) as (app, pilot):
                await prepare_and_boot(app, pilot, lab)
                screen = main_screen(app)
                await pilot.press("r")
                await pilot.pause()
                await choose(app, pilot, "migrate-ping")
                for _ in range(400):  # its ping is in flight: samples pour into the log
                    if screen.state.phase == "baseline":
                        break
                    await asyncio.sleep(0.05)
                assert backend.scenario_running
                fill(small)  # the disk is full now; the next batch of events fails
                await finish_actions(app)
                assert not backend.scenario_running and screen.running is None
                shown = [n.message for n in app.shown]  # type: ignore[attr-defined]
                assert any(
                    f"cannot write the session log {log}: No space left on device" in m
                    for m in shown
                ), shown
                await pilot.press("p")  # nothing more is done unrecorded
                await finish_actions(app)
                shown = [n.message for n in app.shown]  # type: ignore[attr-defined]
                assert any("would go unrecorded" in m for m in shown), shown
                await quit_app(app, pilot)
        lines = log.read_bytes().decode().splitlines()
        records = [json.loads(line) for line in lines]  # every line complete
        assert records[0]["kind"] == "session.header"
        assert records[-1]["kind"] != "session.end"  # it could not be written
