"""The simulated lab's network: one full-duplex link per host, flows shared max-min fairly.

Every host has one NIC on one switch (the study's single 100 Mbit/s switch), so a flow
from A to B uses two links: A's transmit side and B's receive side. Capacities are
TCP goodput, not line rate: 100 Mbit/s of Ethernet carries about 94 Mbit/s of TCP
payload (REFERENCE.md: 1 GiB at ~94 Mbit/s is ~91 s).

Flows are the guest's iSCSI traffic (reads and writes of its disk) and migration
streams. Each asks for a demand (bytes/s; ``math.inf`` for a bulk TCP transfer that
takes all it can) and gets its max-min fair share: progressive filling, the textbook
model of long-lived TCP flows sharing bottlenecks.

A link that a bulk flow saturates keeps a standing queue; small packets (ping, iSCSI
commands) wait behind it. :meth:`Allocation.queue_ms` gives that wait: the M/M/1 wait
``packet_time * rho / (1 - rho)`` below saturation, and a fixed standing queue at it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

TCP_GOODPUT = 0.94
"""Share of the line rate TCP payload gets (headers, ACKs, inter-frame gaps)."""

PACKET_BYTES = 1500
STANDING_QUEUE_PACKETS = 10.0
"""Full-size packets queued ahead of a small one on a link a bulk TCP flow saturates.

Calibrated on the study's test 4 ("latency rose slightly" while migrating): ~1.3 ms
at 100 Mbit/s, instead of the ~120 ms a full 1000-packet transmit queue would add."""


def link_id(host: str, direction: str) -> str:
    """The name of one side of a host's NIC: ``"xen1:tx"`` or ``"xen1:rx"``."""
    return f"{host}:{direction}"


def path(src: str, dst: str) -> tuple[str, str]:
    """The two links a packet from ``src`` to ``dst`` crosses."""
    return link_id(src, "tx"), link_id(dst, "rx")


@dataclass(frozen=True)
class Flow:
    """A transfer that wants ``demand`` bytes/s over ``links``."""

    key: str
    links: tuple[str, ...]
    demand: float
    elastic: bool = False
    """A bulk TCP transfer: it fills whatever it is given, so it keeps a standing queue
    on its bottleneck."""


def max_min_fair(capacity: Mapping[str, float], flows: Sequence[Flow]) -> dict[str, float]:
    """Each flow's rate under max-min fairness (progressive filling).

    All unfrozen flows grow at the same pace; a flow freezes when it reaches its demand
    or when one of its links is full. The result is the unique max-min fair allocation.
    """
    rate = {f.key: 0.0 for f in flows}
    remaining = dict(capacity)
    active = [f for f in flows if f.demand > 0]
    while active:
        users: dict[str, int] = {}
        for f in active:
            for link in f.links:
                users[link] = users.get(link, 0) + 1
        step = min(remaining[link] / n for link, n in users.items())
        step = min(step, min(f.demand - rate[f.key] for f in active))
        step = max(step, 0.0)
        for f in active:
            rate[f.key] += step
            for link in f.links:
                remaining[link] -= step
        full = {link for link in users if remaining[link] <= 1e-9 * max(capacity[link], 1.0)}
        active = [
            f
            for f in active
            if rate[f.key] < f.demand - 1e-12 and not any(link in full for link in f.links)
        ]
    return rate


@dataclass
class Allocation:
    """The result of sharing the links among the flows at one moment."""

    capacity: Mapping[str, float]
    rates: dict[str, float]
    flows: dict[str, Flow]
    used: dict[str, float] = field(default_factory=dict)
    saturated: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for flow in self.flows.values():
            for link in flow.links:
                self.used[link] = self.used.get(link, 0.0) + self.rates[flow.key]
        for flow in self.flows.values():
            if not flow.elastic:
                continue
            for link in flow.links:
                if self.used[link] >= self.capacity[link] * (1 - 1e-6):
                    self.saturated.add(link)

    def rate(self, key: str) -> float:
        return self.rates.get(key, 0.0)

    def utilisation(self, link: str, exclude: Iterable[str] = ()) -> float:
        """Share of ``link`` in use, leaving out the flows named in ``exclude``."""
        skip = set(exclude)
        used = sum(
            self.rates[f.key] for f in self.flows.values() if link in f.links and f.key not in skip
        )
        return min(1.0, used / self.capacity[link])

    def queue_ms(self, link: str, exclude: Iterable[str] = ()) -> float:
        """How long a small packet waits on ``link`` behind the others' traffic."""
        packet_ms = PACKET_BYTES / self.capacity[link] * 1000.0
        if link in self.saturated and not self._only_excluded_saturate(link, exclude):
            return STANDING_QUEUE_PACKETS * packet_ms
        rho = min(self.utilisation(link, exclude), 0.99)
        return packet_ms * rho / (1.0 - rho)

    def _only_excluded_saturate(self, link: str, exclude: Iterable[str]) -> bool:
        skip = set(exclude)
        elastic = [f for f in self.flows.values() if f.elastic and link in f.links]
        return bool(elastic) and all(f.key in skip for f in elastic)

    def path_queue_ms(self, links: Iterable[str], exclude: Iterable[str] = ()) -> float:
        skip = tuple(exclude)
        return sum(self.queue_ms(link, skip) for link in links)


class Network:
    """The lab's hosts on one switch, each with a full-duplex link of ``link_mbit``."""

    def __init__(self, hosts: Iterable[str], link_mbit: float) -> None:
        self.link_mbit = float(link_mbit)
        self.goodput = self.link_mbit * 1e6 / 8 * TCP_GOODPUT  # bytes/s each way
        self.capacity: dict[str, float] = {}
        for host in hosts:
            for direction in ("tx", "rx"):
                self.capacity[link_id(host, direction)] = self.goodput

    @property
    def packet_ms(self) -> float:
        """Time to put one full-size packet on a link."""
        return PACKET_BYTES / self.goodput * 1000.0

    def allocate(self, flows: Sequence[Flow]) -> Allocation:
        for flow in flows:
            for link in flow.links:
                if link not in self.capacity:
                    raise KeyError(f"flow {flow.key}: no link {link}")
        rates = max_min_fair(self.capacity, flows)
        return Allocation(self.capacity, rates, {f.key: f for f in flows})
