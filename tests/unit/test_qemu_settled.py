"""QEMU says "completed" a moment before it has worked out total-time and downtime
(migration_completion, then migration_calculate_complete): an answer in between says 0 ms
for both. The sandbox's e2e caught miglab reporting that 0 as a 12.8 s migration's total
time. The driver asks again until the figures are there, and never reports the 0."""

from __future__ import annotations

import json
from pathlib import Path

from backend.drivers.hv_qemu import settled
from backend.drivers.qmp import MigrationStatus

CAPTURE = Path(__file__).resolve().parents[1] / "data/qmp/source.jsonl"


def completed_reply() -> dict[str, object]:
    """The real final query-migrate answer of tests/data/qmp (QEMU 7.2)."""
    for line in CAPTURE.read_text().splitlines():
        message = json.loads(json.loads(line)["line"])
        answer = message.get("return")
        if isinstance(answer, dict) and answer.get("status") == "completed":
            return answer
    raise AssertionError("no completed answer in the capture")


def in_the_window(reply: dict[str, object]) -> MigrationStatus:
    # What QEMU answers between the two steps: the same reply with both figures still 0.
    return MigrationStatus.model_validate(reply | {"total-time": 0, "downtime": 0})


async def test_a_completed_answer_without_its_figures_is_asked_again() -> None:
    reply = completed_reply()
    answers = [in_the_window(reply), MigrationStatus.model_validate(reply)]
    asked = []

    async def query() -> MigrationStatus:
        asked.append(1)
        return answers.pop(0)

    final = await settled(in_the_window(reply), query, pause_s=0.0)
    assert (final.total_time_ms, final.downtime_ms) == (7515, 6)
    assert len(asked) == 2


async def test_figures_that_never_come_are_unknown_not_zero() -> None:
    stuck = in_the_window(completed_reply())

    async def query() -> MigrationStatus:
        return stuck

    final = await settled(stuck, query, pause_s=0.0, polls=3)
    assert final.status == "completed"
    assert final.total_time_ms is None and final.downtime_ms is None
    assert final.ram is not None and final.ram.transferred == 96515179  # the rest is kept


async def test_a_complete_answer_is_taken_as_it_is() -> None:
    status = MigrationStatus.model_validate(completed_reply())

    async def query() -> MigrationStatus:
        raise AssertionError("no need to ask again")

    assert await settled(status, query, pause_s=0.0) is status
