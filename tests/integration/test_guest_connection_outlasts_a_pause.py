"""The console's SSH connection into the guest outlasts the guest's pause in a migration.

A migration pauses the guest (Xen under TCG: tens of seconds). Before, the guest's
connection had the hosts' keepalive (5 s, 3 unanswered): miglab itself closed it
after ~20 s of silence, which ended sysbench in a real Xen run during its stop-and-copy
and left the report without an "after" value. TCP outlasts such a pause; now so does
the SSH connection. The guest here is a real OpenSSH sshd whose processes are stopped
(SIGSTOP) for longer than the old keepalive allowed: silent, as a paused guest is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.events import Event, HostState
from backend.transport.hosts import Hosts
from backend.transport.ssh import SshTarget
from tests.integration.test_runner import loopback  # noqa: F401 (the fixture)
from tests.support.loopback_lab import LoopbackLab
from tests.support.waiting import until

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


def silence_s(target: SshTarget) -> float:
    """How long a silent server may stay silent before the client closes the connection."""
    return target.keepalive_s * (target.keepalive_count_max + 1)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


@contextlib.contextmanager
def stopped(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def test_the_guest_connection_survives_a_silence_past_the_hosts_keepalive(
    loopback: LoopbackLab,  # noqa: F811 (the imported fixture)
) -> None:
    lab = loopback.lab()
    host_keepalive = SshTarget("host", "198.18.0.1")  # what every lab host gets
    pause_s = silence_s(host_keepalive) + 5.0
    events: list[Event] = []
    hosts = Hosts(lab, events.append)
    guest = await hosts.open_guest()
    ticks: list[str] = []
    # As sysbench runs in the guest: one long command printing every second.
    ticking = asyncio.ensure_future(
        guest.run(
            ["sh", "-c", "while :; do echo tick; sleep 1; done"],
            timeout=None,
            on_line=lambda stream, line: ticks.append(line),
            long_running=True,
        )
    )
    try:
        await until(lambda: len(ticks) >= 2)  # ticks before the pause
        listener = loopback.guest.process
        assert listener is not None
        sessions = descendants(listener.pid)  # our connection's sshd and its shells
        assert sessions, "no sshd process serves the connection"
        with stopped(sessions):
            await asyncio.sleep(pause_s)  # the pause itself is what is tested
        before = len(ticks)
        await until(lambda: len(ticks) > before or ticking.done())
        assert not ticking.done(), ticking.result()  # the command went on, unbroken
        lost = [e for e in events if isinstance(e, HostState) and e.state == "disconnected"]
        assert lost == [], lost
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
        await guest.close()
        await hosts.close()
