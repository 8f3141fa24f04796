"""The live console backend on the simulated lab, as the console's flow tests use it.

The simulated lab of the 2009 study (Xen, IET, 100 Mbit/s) runs in the test's event
loop: SSH servers on loopback answering xl, ietadm, iscsiadm and ping in their real
formats. The backend under test is the real one (:func:`tui.live_backend.make_backend`:
LabController, the drivers and the runner over SSH); :class:`Recorded` only notes which
actions the console asked of it, as :class:`tests.tui.scripted.ScriptedBackend` does, so
that the same flows can assert on both.

Options the flows ask for, made real on the simulated lab:

* ``hold_scenario``: ``migrate-ping`` with a ten-hour baseline, so it is still running
  (ping in flight) whenever the test presses a key;
* ``broken_login``: lab.toml's portal port off by one, so that logging in fails on the
  hosts for real (iscsiadm's own error);
* ``readonly``: the backend made with ``readonly=True``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import textual.app
import textual.pilot
from textual._wait import wait_for_idle

from backend.config import LabConfig, Portal
from backend.experiments.scenarios import Scenario, builtin_scenarios
from backend.sim.lab import SimulatedLab
from tui.backend_api import ConsoleBackend
from tui.live_backend import make_backend

SPEED = 200.0
"""Simulated seconds per wall second: the study's 90 s migration takes under half a second."""
HELD_BASELINE_S = 36_000.0
IDLE_WAIT_MAX_S = 0.1


def bound_textual_idle_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cap how long Textual's pilot waits for "idle" after a key (1 s otherwise).

    Textual's pilot decides that the app is idle when the process uses under 5 % of a
    core for 20 ms; the simulated lab in the same process (its clock, its SSH servers,
    the poller) never drops that low, so every key press would wait the full second.
    The flows wait for what they need themselves (the action's worker, the dialog,
    the event batches drawn).
    """

    async def bounded(min_sleep: float = 0.02, max_sleep: float = 1.0) -> None:
        await wait_for_idle(min_sleep, min(max_sleep, IDLE_WAIT_MAX_S))

    monkeypatch.setattr(textual.app, "wait_for_idle", bounded)
    monkeypatch.setattr(textual.pilot, "wait_for_idle", bounded)


@asynccontextmanager
async def simulated_lab(speed: float = SPEED) -> AsyncIterator[SimulatedLab]:
    async with SimulatedLab.start(speed=speed, seed=0) as sim:
        yield sim


def held_scenarios() -> dict[str, Scenario]:
    """migrate-ping that stays in its baseline until it is cancelled, pinging once a
    (simulated) second as the study did: at 200x that is still 200 replies a second."""
    scenario = builtin_scenarios()["migrate-ping"]
    timeline = scenario.timeline.model_copy(update={"baseline_s": HELD_BASELINE_S})
    (ping,) = scenario.probes
    slower = ping.model_copy(
        update={"options": ping.options.model_copy(update={"interval_s": 1.0})}
    )
    update = {"timeline": timeline, "probes": [slower]}
    return {scenario.id: scenario.model_copy(update=update)}


def wrong_portal(lab: LabConfig) -> LabConfig:
    """``lab`` with the portal's port off by one: the hosts' logins fail."""
    storage = lab.storage
    portal = Portal(address=storage.portal.address, port=storage.portal.port + 1)
    return lab.model_copy(update={"storage": storage.model_copy(update={"portal": portal})})


def slow_console_ping(lab: LabConfig, *, ping: bool = True) -> LabConfig:
    """``lab`` with the console's own ping once a (simulated) second, not ten times: at
    200x that is still 200 replies a second (the default would make 2000). ``ping``
    False: no console ping at all."""
    console = lab.console.model_copy(update={"ping_interval_s": 1.0, "ping": ping})
    return lab.model_copy(update={"console": console})


def sim_backend(
    sim: SimulatedLab,
    log_path: Path,
    *,
    readonly: bool = False,
    hold_scenario: bool = False,
    broken_login: bool = False,
    console_ping: bool = True,
) -> Recorded:
    lab = wrong_portal(sim.lab_config) if broken_login else sim.lab_config
    lab = slow_console_ping(lab, ping=console_ping)
    backend = make_backend(
        lab,
        readonly=readonly,
        simulated=True,
        sim=sim,
        log_path=log_path,
        quick=not hold_scenario,
        scenarios=held_scenarios() if hold_scenario else None,
    )
    return Recorded(backend)


class Recorded:
    """A console backend that notes each action the console called, then does it."""

    def __init__(self, inner: ConsoleBackend) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.scenario_running = False

    def __getattr__(self, name: str) -> Any:  # layout, clock, subscribe, start, plan_*...
        return getattr(self.inner, name)

    async def prepare(self) -> None:
        self.calls.append("prepare")
        await self.inner.prepare()

    async def boot(self, host: str) -> None:
        self.calls.append(f"boot {host}")
        await self.inner.boot(host)

    async def migrate(self, dest: str) -> None:
        self.calls.append(f"migrate {dest}")
        await self.inner.migrate(dest)

    async def run_scenario(self, scenario_id: str) -> None:
        self.calls.append(f"run {scenario_id}")
        self.scenario_running = True
        try:
            await self.inner.run_scenario(scenario_id)
        finally:
            self.scenario_running = False

    async def cancel(self) -> None:
        self.calls.append("cancel")
        await self.inner.cancel()

    async def shutdown_guest(self, host: str) -> None:
        self.calls.append(f"shutdown {host}")
        await self.inner.shutdown_guest(host)

    async def destroy_guest(self, host: str) -> None:
        self.calls.append(f"destroy {host}")
        await self.inner.destroy_guest(host)

    async def logout(self, host: str) -> None:
        self.calls.append(f"logout {host}")
        await self.inner.logout(host)

    async def unexport(self) -> None:
        self.calls.append("unexport")
        await self.inner.unexport()

    async def close(self) -> None:
        self.calls.append("close")
        await self.inner.close()
