"""The transport under faults: dropped link, frozen host, slow link, huge output.

Each test records its events in a real session log and reads it back, because
"the log records each" is as much the point as surviving the fault.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.events import CommandFinished, EventBus, HostState
from backend.session import SessionLogWriter, make_header, read_session
from backend.transport import SshHost, SshTarget
from backend.transport.base import MAX_KEPT_BYTES, MAX_LOGGED_LINES
from tests.support.fault_server import FaultServer
from tests.support.waiting import until


@dataclass
class Rig:
    server: FaultServer
    host: SshHost
    log: SessionLogWriter
    bus: EventBus
    states: list[str] = field(default_factory=list)

    async def read_log(self) -> list[object]:
        await self.log.close()
        return read_session(self.log.path).events

    async def wait_connected(self) -> None:
        """Until the host has said it is connected again: usable, and its "connected"
        published (that comes after two warm-up commands, later on a slow machine; the
        connection is usable before). No deadline: a hang is the test's timeout."""

        def reconnected() -> bool:
            after = self.states[_last(self.states, "disconnected") + 1 :]
            return self.host.connected and "connected" in after

        await until(reconnected)


def _last(items: list[str], item: str) -> int:
    return max((i for i, x in enumerate(items) if x == item), default=-1)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    server = FaultServer(tmp_path)
    await server.start()
    bus = EventBus()
    log = await SessionLogWriter.create(tmp_path / "session.jsonl", make_header(), bus)
    host = SshHost(
        SshTarget(
            "faulty",
            "127.0.0.1",
            server.port,
            identity=str(server.client_key),
            known_hosts=str(server.known_hosts),
            keepalive_s=0.2,
            keepalive_count_max=3,
            connect_timeout_s=5,
        ),
        bus.publish,
    )
    rig = Rig(server, host, log, bus)
    bus.subscribe(lambda e: rig.states.append(e.state) if isinstance(e, HostState) else None)
    await host.connect()
    yield rig
    await host.close()
    await log.close()
    await server.stop()


@pytest.mark.parametrize("long_running", [False, True], ids=["pool", "exec"])
async def test_drop_mid_command_fails_it_and_reconnects(rig: Rig, long_running: bool) -> None:
    result = await rig.host.run(
        ["sh", "-c", "echo partial; sleep 0.2; echo FAULT-DROP-NOW; sleep 5"],
        long_running=long_running,
        timeout=10,
    )
    assert rig.server.dropped == 1
    assert result.exit_status is None and result.failure is not None
    assert result.failure.startswith("connection lost")
    assert result.stdout == "partial\n"  # what arrived before the drop is kept
    await rig.wait_connected()
    after = await rig.host.run(["echo", "back"])
    assert after.ok and after.stdout == "back\n"

    events = await rig.read_log()
    states = [e.state for e in events if isinstance(e, HostState)]
    assert states[states.index("disconnected") :][:3] == ["disconnected", "connecting", "connected"]
    failed = [e for e in events if isinstance(e, CommandFinished) and e.failure]
    assert failed[0].failure.startswith("connection lost") and failed[0].stdout_tail == ["partial"]


async def test_frozen_host_is_noticed_by_keepalive(rig: Rig) -> None:
    started = time.monotonic()
    result = await rig.host.run(
        ["sh", "-c", "echo FAULT-HANG-NOW; sleep 30"], timeout=20, long_running=True
    )
    noticed = time.monotonic() - started
    assert rig.server.hung == 1
    assert result.failure is not None and result.failure.startswith("connection lost")
    # Keepalive (every 0.2 s, 3 misses) noticed it, not the command's 20 s timeout: the
    # failure says "connection lost", and it came before that timeout.
    assert noticed < 20
    await rig.wait_connected()
    assert (await rig.host.run(["true"])).ok

    events = await rig.read_log()
    lost = [e for e in events if isinstance(e, HostState) and e.state == "disconnected"]
    assert lost and lost[0].reason is not None


async def test_slow_link_splits_markers_without_confusing_the_pool(rig: Rig) -> None:
    rig.server.slow_bytes = True
    lines: list[str] = []
    for round_ in range(3):
        result = await rig.host.run(
            ["sh", "-c", f"printf 'a\\nbb\\nccc-{round_}'; echo err >&2; exit {round_}"],
            on_line=lambda stream, line: lines.append(line) if stream == "stdout" else None,
        )
        assert result.exit_status == round_
        assert result.stdout == f"a\nbb\nccc-{round_}" and result.stderr == "err\n"
    assert lines == ["a", "bb", "ccc-0", "a", "bb", "ccc-1", "a", "bb", "ccc-2"]
    events = await rig.read_log()
    finished = [e for e in events if isinstance(e, CommandFinished) and e.argv[0] == "sh"]
    assert [e.exit_status for e in finished] == [0, 1, 2]


async def test_huge_output_is_bounded_and_the_host_survives(rig: Rig) -> None:
    # ~20 MB in 400 000 lines: more than the result keeps and far more than the log keeps.
    result = await rig.host.run(
        ["sh", "-c", "head -c 18000000 /dev/zero | od -An -v -tx1 | head -n 400000"],
        timeout=60,
    )
    assert result.ok and result.truncated
    assert MAX_KEPT_BYTES - 200_000 < len(result.stdout) <= MAX_KEPT_BYTES
    assert result.stdout.endswith("00 00\n")
    assert (await rig.host.run(["echo", "fine"])).stdout == "fine\n"

    events = await rig.read_log()
    outputs = [e for e in events if e.kind == "command.output"]
    assert MAX_LOGGED_LINES <= len(outputs) < MAX_LOGGED_LINES + 10
    huge = next(e for e in events if isinstance(e, CommandFinished) and e.argv[0] == "sh")
    assert len(huge.stdout_tail) == 20 and huge.exit_status == 0


async def test_plain_exec_sends_the_command_line_as_ssh_would(rig: Rig) -> None:
    plain = SshHost(
        SshTarget(
            "plain",
            "127.0.0.1",
            rig.server.port,
            identity=str(rig.server.client_key),
            known_hosts=str(rig.server.known_hosts),
            plain_exec=True,
        ),
        rig.bus.publish,
    )
    await plain.connect()
    try:
        result = await plain.run(["printf", "%s|", "a b", "$HOME"])
        assert result.ok and result.stdout == "a b|$HOME|"
        slow = await plain.run(["sleep", "5"], timeout=0.3)
        assert slow.failure == "timeout"
        assert (await plain.run(["sh", "-c", "exit 4"])).exit_status == 4
    finally:
        await plain.close()
