"""The host poller publishes what changed since the panes were last told, and only that.

The drivers here answer from fixed values (what the real drivers' parsers return); the
poller on the simulated lab's real drivers is in tests/tui/test_live_backend.py.
"""

from __future__ import annotations

from typing import Any

from backend.config import parse_lab
from backend.drivers.base import (
    DomainInfo,
    HostInfo,
    InitiatorSessionInfo,
    LunInfo,
    TargetInfo,
    TargetStatus,
)
from backend.events import Event, EventBus, HostResources, InitiatorSession, StorageUnexported
from backend.host_poller import HostPoller
from backend.transport.hosts import Hosts
from tests.unit.test_lab_where import LAB

IQN = "iqn.2024-01.lab.storage:disk1"


class Answers:
    """The drivers a LabController holds, answering as the lab stands (``exported``)."""

    def __init__(self) -> None:
        self.exported = True
        self.hypervisor = self
        self.initiator = self
        self.target = self

    async def domains(self, host: str) -> list[DomainInfo]:
        return []

    async def info(self, host: str) -> HostInfo:
        return HostInfo(host, 900, 1024, "4.17")

    async def sessions(self, host: str) -> list[InitiatorSessionInfo]:
        return [InitiatorSessionInfo(host, "198.18.0.1:3260", IQN, None)]

    async def status(self) -> TargetStatus:
        luns = (LunInfo(1, None, "/srv/disk1.img"),)
        return TargetStatus((TargetInfo(IQN, 1, luns, ()),) if self.exported else ())


class Connected(dict[str, Any]):
    """Every host is connected (the poller asks only ``get``)."""

    def get(self, name: str, default: Any = None) -> Any:
        return object()


async def test_a_look_publishes_each_change_once_and_what_the_bus_said_counts() -> None:
    lab = parse_lab(LAB)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    answers = Answers()
    hosts: Hosts = Connected()  # type: ignore[assignment]
    poller = HostPoller(lab, hosts, bus.publish, lambda: answers, busy=lambda: False)  # type: ignore[arg-type,return-value]
    bus.subscribe(poller.seen)

    await poller._look()
    kinds = sorted(e.kind for e in events)
    assert kinds == sorted(
        ["host.resources"] * 2 + ["initiator.session"] * 2 + ["storage.exported"]
    )
    assert {e.host for e in events if isinstance(e, HostResources | InitiatorSession)} == {
        "xen1",
        "xen2",
    }

    events.clear()
    await poller._look()  # nothing changed: nothing said
    assert events == []

    bus.publish(StorageUnexported(host="storage", iqn=IQN))  # an action said so itself
    answers.exported = False
    events.clear()
    await poller._look()  # the panes know already
    assert events == []

    answers.exported = True
    await poller._look()
    assert [e.kind for e in events] == ["storage.exported"]
