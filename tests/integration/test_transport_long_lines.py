"""Huge output lines against a real sshd: the events stay small and say what was cut."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.events import CommandFinished, CommandOutput, Event
from backend.transport import LocalRunner, SshHost, SshTarget
from backend.transport.base import MAX_KEPT_BYTES, MAX_LINE_CHARS, HostRunner, cut_marker
from tests.support.sshd import Sshd

HUGE = 50_000_000
HUGE_LINE = f"head -c {HUGE} /dev/zero | tr '\\0' a; echo; echo after"


@pytest.fixture
async def ssh_host(sshd: Sshd) -> AsyncIterator[tuple[SshHost, list[Event]]]:
    events: list[Event] = []
    runner = SshHost(
        SshTarget(
            "h1",
            sshd.address,
            sshd.port,
            sshd.user,
            str(sshd.client_key),
            known_hosts=str(sshd.known_hosts),
        ),
        events.append,
    )
    await runner.connect()
    yield runner, events
    await runner.close()


def logged_chars(events: list[Event], cmd_id: int) -> int:
    total = 0
    for event in events:
        if isinstance(event, CommandOutput) and event.cmd_id == cmd_id:
            total += len(event.line)
        if isinstance(event, CommandFinished) and event.cmd_id == cmd_id:
            total += sum(map(len, event.stdout_tail + event.stderr_tail))
    return total


async def check_huge_line(runner: HostRunner, events: list[Event], **kwargs: bool) -> None:
    seen: list[str] = []
    result = await runner.run(
        ["sh", "-c", HUGE_LINE], timeout=120, on_line=lambda _, line: seen.append(line), **kwargs
    )
    assert result.ok, result.failure
    # The result keeps a bounded copy of the output (its end).
    assert result.truncated and len(result.stdout) <= MAX_KEPT_BYTES
    assert result.stdout.endswith("a\nafter\n")
    finished = [e for e in events if isinstance(e, CommandFinished) and e.argv[0] == "sh"][-1]
    capped = "a" * MAX_LINE_CHARS + cut_marker(HUGE - MAX_LINE_CHARS)
    lines = [e.line for e in events if isinstance(e, CommandOutput) and e.cmd_id == finished.cmd_id]
    assert lines == [capped, "after"]
    assert seen == [capped, "after"]
    assert finished.stdout_tail == [capped, "after"]


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_a_50_mb_line_is_cut_in_the_events(
    ssh_host: tuple[SshHost, list[Event]], long_running: bool
) -> None:
    runner, events = ssh_host
    await check_huge_line(runner, events, long_running=long_running)
    assert (await runner.run(["echo", "fine"])).stdout == "fine\n"


async def test_a_50_mb_line_is_cut_in_the_events_locally() -> None:
    events: list[Event] = []
    await check_huge_line(LocalRunner("local", events.append), events)


async def test_five_20_mb_lines_put_kilobytes_not_megabytes_in_the_log(
    ssh_host: tuple[SshHost, list[Event]],
) -> None:
    runner, events = ssh_host
    script = "for i in 1 2 3 4 5; do head -c 20000000 /dev/zero | tr '\\0' b; echo; done"
    result = await runner.run(["sh", "-c", script], timeout=120)
    assert result.ok and result.truncated
    finished = [e for e in events if isinstance(e, CommandFinished)][-1]
    # Five lines, each logged once as output and once in the tail, each capped.
    bound = 5 * 2 * (MAX_LINE_CHARS + len(cut_marker(20_000_000)))
    assert logged_chars(events, finished.cmd_id) <= bound
    assert (
        finished.stdout_tail == ["b" * MAX_LINE_CHARS + cut_marker(20_000_000 - MAX_LINE_CHARS)] * 5
    )


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_an_incomplete_utf8_sequence_at_the_end_is_not_lost(
    ssh_host: tuple[SshHost, list[Event]], long_running: bool
) -> None:
    runner, _ = ssh_host
    result = await runner.run(
        ["sh", "-c", r"printf 'caf\303\251 \303'; printf 'x\303' >&2"], long_running=long_running
    )
    assert result.ok
    assert result.stdout == "café \ufffd" and result.stderr == "x\ufffd"
