"""Every command ends by its deadline, even on a frozen host (sshd stopped with SIGSTOP).

A frozen host accepts TCP (the kernel answers) but nothing in sshd runs: a new
channel or shell is never confirmed, a running command never reports back. The
bounds below are correctness bounds derived from the timeout given (a command
with timeout=2 must not take 20 s, or forever with keepalives off), not speed
assumptions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.events import Event
from backend.transport import SshHost, SshTarget, TransportError
from backend.transport.ssh import STOP_GRACE_S
from tests.integration.conftest import make_sshd
from tests.support.sshd import Sshd

TIMEOUT_S = 2.0
# The most a command may take: its timeout, the bounded stop after it, and slack for a
# loaded machine. Far below what a keepalive would give (20 s) and below forever.
BOUND_S = TIMEOUT_S + STOP_GRACE_S + 4.0


def descendants(root: int) -> list[int]:
    """``root`` and every process under it (sshd's per-connection children and shells)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class Freezer:
    """SIGSTOPs an sshd with everything under it; SIGCONTs whatever it stopped."""

    def __init__(self, server: Sshd) -> None:
        self.server = server
        self.stopped: set[int] = set()

    def freeze(self) -> None:
        assert self.server.process is not None
        for pid in descendants(self.server.process.pid):
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            self.stopped.add(pid)

    def thaw(self) -> None:
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stopped.clear()


@pytest.fixture
def frozen_rig(tmp_path: Path) -> Iterator[tuple[Sshd, Freezer]]:
    server = make_sshd(tmp_path / "sshd")
    freezer = Freezer(server)
    try:
        yield server, freezer
    finally:
        freezer.thaw()
        server.stop()


def target(server: Sshd, keepalive_s: float) -> SshTarget:
    return SshTarget(
        name="frozen",
        address=server.address,
        port=server.port,
        user=server.user,
        identity=str(server.client_key),
        known_hosts=str(server.known_hosts),
        keepalive_s=keepalive_s,
        connect_timeout_s=5.0,
    )


@pytest.fixture(params=[0.0, 5.0], ids=["keepalive-off", "keepalive-default"])
async def frozen_host(
    request: pytest.FixtureRequest, frozen_rig: tuple[Sshd, Freezer]
) -> AsyncIterator[tuple[SshHost, Freezer, list[Event]]]:
    server, freezer = frozen_rig
    events: list[Event] = []
    host = SshHost(target(server, request.param), events.append)
    await host.connect()
    try:
        yield host, freezer, events
    finally:
        freezer.thaw()
        await asyncio.wait_for(host.close(), 15)


async def timed_run(host: SshHost, **kwargs: object) -> tuple[float, object]:
    started = time.monotonic()
    result = await asyncio.wait_for(
        host.run(["true"], timeout=TIMEOUT_S, **kwargs),  # type: ignore[arg-type]
        BOUND_S * 3,  # only so a regression fails instead of hanging the suite
    )
    return time.monotonic() - started, result


async def test_a_command_needing_a_new_shell_ends_by_its_deadline(
    frozen_host: tuple[SshHost, Freezer, list[Event]],
) -> None:
    host, freezer, _ = frozen_host
    freezer.freeze()
    # Two at once: the pool has one idle shell, so the second must open a new one.
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(
            host.run(["true"], timeout=TIMEOUT_S), host.run(["true"], timeout=TIMEOUT_S)
        ),
        BOUND_S * 3,
    )
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"took {elapsed:.1f} s with timeout={TIMEOUT_S}"
    for result in results:
        assert result.failure is not None and result.failure.startswith("timeout"), result
        assert result.exit_status is None and result.host == "frozen" and result.argv == ["true"]


async def test_a_command_needing_a_new_channel_ends_by_its_deadline(
    frozen_host: tuple[SshHost, Freezer, list[Event]],
) -> None:
    host, freezer, _ = frozen_host
    freezer.freeze()
    elapsed, result = await timed_run(host, long_running=True)
    assert elapsed < BOUND_S, f"took {elapsed:.1f} s with timeout={TIMEOUT_S}"
    assert result.failure is not None and result.failure.startswith("timeout"), result  # type: ignore[attr-defined]


async def test_a_command_on_an_idle_shell_ends_by_its_deadline(
    frozen_host: tuple[SshHost, Freezer, list[Event]],
) -> None:
    host, freezer, _ = frozen_host
    freezer.freeze()
    elapsed, result = await timed_run(host)
    assert elapsed < BOUND_S, f"took {elapsed:.1f} s with timeout={TIMEOUT_S}"
    assert result.failure is not None and result.failure.startswith("timeout"), result  # type: ignore[attr-defined]


async def test_the_host_answers_again_after_it_thaws(
    frozen_host: tuple[SshHost, Freezer, list[Event]],
) -> None:
    host, freezer, _ = frozen_host
    freezer.freeze()
    _, result = await timed_run(host)
    assert result.failure is not None  # type: ignore[attr-defined]
    freezer.thaw()
    after = await asyncio.wait_for(host.run(["echo", "back"], timeout=30), 60)
    assert after.ok and after.stdout == "back\n", after


async def test_a_refused_shell_is_a_failed_result_not_an_exception(tmp_path: Path) -> None:
    # MaxSessions 1: the pool's first shell takes the only session, so the second
    # command's new shell is refused by sshd (asyncssh's ChannelOpenError).
    server = make_sshd(tmp_path / "sshd", extra_config="MaxSessions 1")
    host = SshHost(target(server, 5.0), lambda event: None)
    try:
        await host.connect()
        results = await asyncio.wait_for(
            asyncio.gather(
                host.run(["sleep", "0.5"], timeout=10), host.run(["sleep", "0.5"], timeout=10)
            ),
            60,
        )
        refused = [r for r in results if not r.ok]
        assert len(refused) == 1, results
        failure = refused[0].failure or ""
        assert failure.startswith("could not open a shell:"), failure
        assert refused[0].host == "frozen" and refused[0].argv == ["sleep", "0.5"]
    finally:
        await host.close()
        server.stop()


@pytest.mark.parametrize("keepalive_s", [0.0, 5.0], ids=["keepalive-off", "keepalive-default"])
async def test_connecting_to_a_frozen_host_ends_by_the_connect_timeout(
    frozen_rig: tuple[Sshd, Freezer], keepalive_s: float
) -> None:
    server, freezer = frozen_rig
    freezer.freeze()  # the kernel still accepts the TCP connection; sshd never answers
    host = SshHost(
        SshTarget(
            "frozen",
            server.address,
            server.port,
            server.user,
            str(server.client_key),
            known_hosts=str(server.known_hosts),
            connect_timeout_s=TIMEOUT_S,
            keepalive_s=keepalive_s,
        ),
        lambda event: None,
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"cannot reach .*no answer within 2 s"):
        await asyncio.wait_for(host.connect(), BOUND_S * 3)
    assert time.monotonic() - started < BOUND_S
    await host.close()
