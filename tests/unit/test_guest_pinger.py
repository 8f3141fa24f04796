"""GuestPinger: the console pings the guest while it runs, and only then.

The storage node here is this machine (a LocalRunner) and the guest's address is
loopback, so the pings are real `ping -D -O` replies that reach nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.config import parse_lab
from backend.events import (
    CommandStarted,
    DomainState,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    HostState,
    Note,
    Sample,
)
from backend.guest_pinger import GuestPinger
from backend.transport.local import LocalRunner
from tests.support.waiting import until
from tests.unit.test_lab_where import LAB

LOOPBACK_LAB = LAB.replace('address = "198.18.0.50"', 'address = "127.0.0.1"')


def pings(events: list[Event], *, asking: bool = False) -> list[CommandStarted]:
    """The recorded pings started (``asking``: the one-echo asks of a booting guest too)."""
    return [
        e
        for e in events
        if isinstance(e, CommandStarted) and e.argv[0] == "ping" and (asking or not e.poll)
    ]


def replies(events: list[Event]) -> int:
    return sum(1 for e in events if isinstance(e, Sample) and "rtt_ms" in e.values)


async def test_it_pings_while_the_guest_runs_and_waits_for_the_storage_node() -> None:
    lab = parse_lab(LOOPBACK_LAB)
    events: list[Event] = []
    hosts: dict[str, Any] = {}  # the storage node is not connected yet
    pinger = GuestPinger(lab, hosts, events.append, clock=lambda: 0.0)  # type: ignore[arg-type]
    guest = lab.guest.name
    try:
        pinger.seen(DomainState(host="xen1", domain=guest, state="running"))
        assert not pinger.pinging  # nothing to ping from
        hosts["storage"] = LocalRunner("storage", events.append)
        pinger.seen(HostState(host="storage", state="connected"))
        await until(lambda: replies(events) >= 3)
        [started] = pings(events)
        assert started.host == "storage" and started.argv[-1] == "127.0.0.1"
        assert "0.1" in started.argv  # [console] ping_interval_s's default
        # A scenario without its own ping from the storage node: the ping goes on.
        started_run = ExperimentStarted(
            scenario="s", title="t", repetitions=1, migrations=1, sequence="x", timeline={}
        )
        pinger.seen(started_run)
        assert pinger.pinging
        pinger.seen(ExperimentFinished(scenario="s", status="ok"))
        assert pinger.pinging and len(pings(events)) == 1
        # One that pings from there itself measures with its ping: this one pauses meanwhile.
        pinger.next_run(pings=True, ends_session=False)
        pinger.seen(started_run)
        assert not pinger.pinging
        pinger.seen(ExperimentFinished(scenario="s", status="ok"))
        assert pinger.pinging
        await until(lambda: len(pings(events)) == 2)
        pinger.seen(started_run)  # the next run, told nothing, does not ping by itself
        assert pinger.pinging
        pinger.seen(ExperimentFinished(scenario="s", status="ok"))
        # The guest is gone from every host: no more pinging, until it runs again.
        pinger.seen(DomainState(host="xen1", domain=guest, state="absent"))
        assert not pinger.pinging
        pinger.seen(DomainState(host="xen1", domain=guest, state="running"))
        assert pinger.pinging
        await until(lambda: len(pings(events)) == 3)
        # A run that ends the session (miglab run): no ping after it.
        pinger.next_run(pings=False, ends_session=True)
        pinger.seen(started_run)
        assert pinger.pinging
        pinger.seen(ExperimentFinished(scenario="s", status="ok"))
        assert not pinger.pinging
        pinger.seen(DomainState(host="xen1", domain=guest, state="running"))
        assert not pinger.pinging and len(pings(events)) == 3
        assert not [e for e in events if isinstance(e, Note)]  # stopped on purpose: no warning
    finally:
        await pinger.close()
        for runner in hosts.values():
            await runner.close()


async def test_a_ping_that_ends_by_itself_is_a_warning_and_not_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # the storage node has no ping
    lab = parse_lab(LOOPBACK_LAB)
    events: list[Event] = []
    hosts = {"storage": LocalRunner("storage", events.append)}
    pinger = GuestPinger(lab, hosts, events.append, clock=lambda: 0.0)  # type: ignore[arg-type]
    try:
        pinger.seen(DomainState(host="xen1", domain=lab.guest.name, state="running"))
        await until(lambda: any(isinstance(e, Note) for e in events))
        [note] = [e for e in events if isinstance(e, Note)]
        assert note.level == "warning" and "ping of the guest from storage ended" in note.text
        # It could not even ask whether the guest answers: not again by itself.
        assert not pinger.pinging and len(pings(events, asking=True)) == 1
        pinger.seen(DomainState(host="xen1", domain=lab.guest.name, state="blocked"))
        await until(lambda: len(pings(events, asking=True)) == 2)  # the guest changed: once more
    finally:
        await pinger.close()
        await hosts["storage"].close()
