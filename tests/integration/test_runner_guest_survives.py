"""A guest that dies after its migration fails the run (real sshd, sysbench, ping).

On the Xen sandbox the loaded guest's vCPU triple-faulted after a migration that xl
reported as a success; Xen rebooted it. sysbench's output just stopped, the stop's kill
could not open a channel, and the run ended "ok" with an empty "after". The runner now
reads the guest's boot id when it starts using the guest and again at the end of a stage
that migrated it. Here the "guest" is the loopback lab's sshd on this machine, so its
boot id is a file of the test's (the runner reads whatever GUEST_BOOT_ID names): the test
changes it (a reboot) or makes reading it hang (a guest that does not answer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from backend.events import Event, MigrationFinished
from backend.experiments import runner as runner_module
from backend.experiments.scenarios import find_scenario
from backend.session import read_session
from tests.integration import test_runner
from tests.integration.test_runner import LabUnderTest, run_scenario, short
from tests.support.waiting import until

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

# test_runner.py's lab (its fixtures, used here by name).
loopback = test_runner.loopback
testlab = test_runner.testlab


def migrated(events: list[Event]) -> bool:
    return any(isinstance(e, MigrationFinished) and e.ok for e in events)


@pytest.fixture
def boot_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "boot_id"
    path.write_text("5f0e3c1a-0000-4000-8000-000000000001\n")
    monkeypatch.setattr(runner_module, "GUEST_BOOT_ID", str(path))
    return path


async def test_a_guest_that_rebooted_after_its_migration_fails_the_run(
    testlab: LabUnderTest, tmp_path: Path, boot_id: Path
) -> None:
    async def reboot_after_the_migration(_: Any, __: Any, events: list[Event]) -> None:
        await until(lambda: migrated(events))
        boot_id.write_text("5f0e3c1a-0000-4000-8000-000000000002\n")

    scenario = short(find_scenario("migrate-sysbench-cpu"), baseline_s=2.0, after_s=2.0)
    log = tmp_path / "rebooted.jsonl"
    result, _, _ = await run_scenario(testlab, scenario, log, during=reboot_after_the_migration)

    assert result is not None and result.status == "failed", result
    assert result.migrations_ok  # the migration itself went well; the guest did not
    assert result.error is not None
    assert "the guest guest rebooted after its migration" in result.error, result.error
    assert "-000000000002, not 5f0e3c1a-" in result.error
    session = read_session(log)
    assert session.end is not None and session.end["status"] == "failed"


async def test_a_guest_that_does_not_answer_after_its_migration_fails_the_run(
    testlab: LabUnderTest, tmp_path: Path, boot_id: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "GUEST_CHECK_S", 5.0)

    async def hang_after_the_migration(_: Any, __: Any, events: list[Event]) -> None:
        await until(lambda: migrated(events))
        # `cat` of a FIFO nobody writes blocks: a guest that takes the command and
        # never answers (as one that died with the TCP connection still open).
        boot_id.unlink()
        os.mkfifo(boot_id)

    scenario = short(find_scenario("migrate-sysbench-cpu"), baseline_s=2.0, after_s=2.0)
    log = tmp_path / "silent.jsonl"
    result, _, _ = await run_scenario(testlab, scenario, log, during=hang_after_the_migration)

    assert result is not None and result.status == "failed", result
    assert result.migrations_ok
    assert result.error is not None
    assert result.error.startswith(
        f"the guest guest did not answer `cat {boot_id}` over SSH (timeout) after its "
        "migration: it may have crashed"
    ), result.error
    session = read_session(log)
    assert session.end is not None and session.end["status"] == "failed"


async def test_a_guest_that_survived_its_migration_is_asked_twice_and_the_run_is_ok(
    testlab: LabUnderTest, tmp_path: Path, boot_id: Path
) -> None:
    scenario = short(find_scenario("migrate-sysbench-cpu"), baseline_s=2.0, after_s=2.0)
    log = tmp_path / "ok.jsonl"
    result, events, _ = await run_scenario(testlab, scenario, log)

    assert result is not None and result.status == "ok", result and result.error
    asked = [
        e
        for e in events
        if e.kind == "command.finished" and list(getattr(e, "argv", ())) == ["cat", str(boot_id)]
    ]
    assert len(asked) == 2 and all(getattr(e, "exit_status", None) == 0 for e in asked), asked
