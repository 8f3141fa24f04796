"""A bug in the middle of a run: the run still cleans up, and its log ends "crashed"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.events import EventBus, set_clock
from backend.experiments.runner import ExperimentRunner
from backend.experiments.scenarios import find_scenario
from backend.sim.lab import SimulatedLab
from backend.transport.hosts import Hosts


async def test_an_unexpected_error_ends_the_log_crashed_not_failed(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    async with SimulatedLab.start(speed=200.0, seed=0) as sim:
        set_clock(sim.clock)
        try:
            bus = EventBus()
            hosts = Hosts(sim.lab_config, bus.publish)

            async def switch_disk(disk: str) -> None:
                raise ZeroDivisionError(f"a bug while switching to {disk}")

            runner = ExperimentRunner(
                sim.lab_config,
                hosts,
                bus,
                find_scenario("disk-iscsi-vs-local").quick(),
                log_path=log,
                simulated=True,
                switch_disk=switch_disk,
                clock=sim.clock,
                sleep=sim.runtime.sleep,
            )
            with pytest.raises(ZeroDivisionError):
                await runner.run()
            await hosts.close()
            await bus.aclose()
        finally:
            set_clock(None)
    assert runner.result is not None and runner.result.status == "crashed"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    finished = [r for r in records if r["kind"] == "experiment.finished"]
    assert [r["status"] for r in finished] == ["crashed"]
    assert "ZeroDivisionError: a bug while switching to" in finished[0]["error"]
    assert records[-1] == {**records[-1], "kind": "session.end", "status": "crashed"}
