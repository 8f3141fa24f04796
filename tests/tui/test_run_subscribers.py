"""Runs on a console's bus leave no subscriber behind (the bus lives as long as the console).

On the simulated study lab, as in test_live_backend.py: each run of a scenario from the
console makes an ExperimentRunner on the console's bus; when the run is over, whether
it failed or was stopped, the bus has the subscribers it had before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.events import CommandStarted, Event, EventBus, ExperimentFinished
from backend.experiments.runner import RunAborted
from backend.experiments.scenarios import builtin_scenarios
from backend.lab_session import LabSession
from backend.sim.lab import SimulatedLab
from tests.tui.sim_backend import held_scenarios, wrong_portal
from tui.live_backend import LiveBackend, make_backend

pytestmark = pytest.mark.timeout(90)

RUNS = 3


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLab]:
    async with SimulatedLab.start(speed=200.0, seed=0) as lab:
        yield lab


def bus_of(backend: LiveBackend) -> EventBus:
    return backend._session.bus  # what is checked here is the bus itself


def pings_started(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, CommandStarted) and e.argv[0] == "ping"]


async def until(what: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():  # type: ignore[operator]
        assert time.monotonic() < deadline, "did not get there in time"
        await asyncio.sleep(0.02)


async def test_failed_runs_leave_no_subscriber_on_the_consoles_bus(
    sim: SimulatedLab, tmp_path: Path
) -> None:
    # The hosts' logins fail (wrong portal): each run ends in its storage set-up.
    backend = make_backend(
        wrong_portal(sim.lab_config),
        sim=sim,
        readonly=False,
        quick=True,
        log_path=tmp_path / "s.jsonl",
    )
    assert isinstance(backend, LiveBackend)
    seen: list[Event] = []
    backend.subscribe(seen.append)
    await backend.start()
    try:
        before = bus_of(backend).subscriber_count
        for _ in range(RUNS):
            with pytest.raises(RunAborted):
                await backend.run_scenario("migrate-ping")
        finished = [e for e in seen if isinstance(e, ExperimentFinished)]
        assert [e.status for e in finished] == ["failed"] * RUNS  # the runs did run
        assert bus_of(backend).subscriber_count == before
    finally:
        await backend.close()
    assert bus_of(backend).subscriber_count == 0  # the console's own ones go at close


async def test_a_stopped_run_leaves_no_subscriber_on_the_bus(sim: SimulatedLab) -> None:
    session = LabSession(sim.lab_config, sim=sim)
    bus = session.bus
    own = bus.subscriber_count  # the session's own (its migration meter)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    scenario = held_scenarios()["migrate-ping"]
    try:
        for _ in range(RUNS):
            runner = session.experiment(scenario)
            pings = len(pings_started(seen))
            task = asyncio.ensure_future(runner.run())
            # Stopped once its ping runs: in the middle of the run, not before it.
            await until(lambda: len(pings_started(seen)) > pings)  # noqa: B023
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert runner.result is not None and runner.result.status == "interrupted"
            assert bus.subscriber_count == own + 1, "the run left its subscriber on the bus"
    finally:
        await session.close()


async def test_a_runner_that_never_ran_does_not_listen(sim: SimulatedLab) -> None:
    session = LabSession(sim.lab_config)
    own = session.bus.subscriber_count  # the session's own (its migration meter)
    runner = session.experiment(builtin_scenarios()["migrate-ping"])
    try:
        await runner.plan()  # a dry run records nothing either
        assert session.bus.subscriber_count == own
    finally:
        await session.close()
