"""A run whose hypervisor host cannot be asked where the guest is, at the migration.

Before: the runner read a failed ``xl list`` on the guest's host as "the guest runs on
no host". Now the run fails saying which host could not be asked, the command and
its stderr. The lab is test_runner.py's loopback lab (real sshd, tgtd, ping; xl the
fake of tests/support/fake_tools); xen1's xl fails for real because its state file is
unreadable while the run is in its baseline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backend.events import Event, Phase
from backend.experiments.scenarios import find_scenario
from backend.session import read_session
from tests.integration.test_runner import loopback, run_scenario, short  # noqa: F401
from tests.support.loopback_lab import LoopbackLab

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


@pytest.fixture
def fresh(loopback: LoopbackLab) -> LoopbackLab:  # noqa: F811 (the imported fixture)
    loopback.reset()
    return loopback


async def test_an_unanswered_xl_list_is_not_a_guest_on_no_host(
    fresh: LoopbackLab, tmp_path: Path
) -> None:
    testlab = fresh
    scenario = short(find_scenario("migrate-ping"), baseline_s=3.0)
    state = testlab.state_path("xen1")
    kept: list[str] = []

    async def break_xen1(runner: Any, task: asyncio.Future[Any], events: list[Event]) -> None:
        while not any(isinstance(e, Phase) and e.name == "baseline" for e in events):
            assert not task.done(), "the run ended before its baseline"
            await asyncio.sleep(0.05)
        kept.append(state.read_text())
        state.write_text("not json\n")  # xen1's xl now exits 1 with its error on stderr

    try:
        result, _, _ = await run_scenario(
            testlab, scenario, tmp_path / "unasked.jsonl", during=break_xen1
        )
    finally:
        if kept:
            state.write_text(kept[0])
    assert result is not None and result.status == "failed"
    error = result.error or ""
    assert "runs on no host" not in error, error
    assert "cannot tell where the guest runs" in error, error
    assert "xen1: `xl list` failed (exit status 1)" in error and "JSONDecodeError" in error
    session = read_session(tmp_path / "unasked.jsonl")
    assert session.end is not None and session.end["status"] == "failed"
    assert testlab.domains("xen1") == ["guest"]  # it ran there all along
