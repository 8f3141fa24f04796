"""A bug in the middle of a run: the run still cleans up, and its log ends "crashed"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.experiments.runner import ExperimentRunner
from backend.experiments.scenarios import find_scenario
from backend.lab_session import LabSession
from backend.sim.lab import SimulatedLab


async def test_an_unexpected_error_ends_the_log_crashed_not_failed(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    async with SimulatedLab.start(speed=200.0, seed=0) as sim:
        session = LabSession(sim.lab_config, sim=sim, log=log)
        session.use_clock()
        try:

            async def switch_disk(disk: str) -> None:
                raise ZeroDivisionError(f"a bug while switching to {disk}")

            runner = ExperimentRunner(
                session,
                find_scenario("disk-iscsi-vs-local").quick(),
                records=True,
                switch_disk=switch_disk,
            )
            with pytest.raises(ZeroDivisionError):
                await runner.run()
        finally:
            await session.close()
    assert runner.result is not None and runner.result.status == "crashed"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    finished = [r for r in records if r["kind"] == "experiment.finished"]
    assert [r["status"] for r in finished] == ["crashed"]
    assert "ZeroDivisionError: a bug while switching to" in finished[0]["error"]
    assert records[-1] == {**records[-1], "kind": "session.end", "status": "crashed"}
