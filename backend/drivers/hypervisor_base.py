"""What the Xen and QEMU drivers have in common (:mod:`backend.drivers.factories` picks one).

:class:`HypervisorBase` holds the shared parts: the two hosts and their runners, the
guest's copies (``NAME``, and during a migration ``NAME--incoming`` on the destination
and ``NAME--migratedaway`` on the source, as xl names them; the QEMU driver uses the
same names for the same moments), the look-before-boot rule (never a second copy of the
guest on the shared disk) and ``domain.state`` events, published when a copy's state
changes.
"""

from __future__ import annotations

import abc
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Literal

from backend.config import LOCAL, LabConfig
from backend.drivers.base import (
    ABSENT,
    ALIVE,
    DomainInfo,
    DriverError,
    Publish,
    Refused,
)
from backend.drivers.parse_xl import INCOMING_SUFFIX, MIGRATEDAWAY_SUFFIX
from backend.events import DomainState, Note
from backend.transport.base import HostRunner

__all__ = ["HypervisorBase"]


class HypervisorBase(abc.ABC):
    """Hosts, runners, the guest's copies and ``domain.state`` events."""

    def __init__(self, lab: LabConfig, runners: Mapping[str, HostRunner], publish: Publish) -> None:
        self.lab = lab
        self.guest = lab.guest.name
        self._runners = runners
        self._publish = publish
        self._seen: dict[tuple[str, str], str] = {}  # (host, domain) -> last published state

    # -- hosts

    @property
    def hosts(self) -> tuple[str, str]:
        first, second = self.lab.hypervisor.hosts
        return first, second

    def runner(self, host: str) -> HostRunner:
        if host not in self.hosts:
            raise DriverError(
                f"{host} is not a hypervisor host of this lab ({', '.join(self.hosts)})"
            )
        try:
            return self._runners[host]
        except KeyError:
            raise DriverError(f"{host}: no connection to this host was opened") from None

    def other(self, host: str) -> str:
        first, second = self.hosts
        return second if host == first else first

    def peer_address(self, host: str) -> str:
        """The address another host reaches ``host`` at: lab.toml's, "local" -> 127.0.0.1."""
        address = self.lab.host(host).address
        return "127.0.0.1" if address == LOCAL else address

    @staticmethod
    def is_loopback(address: str) -> bool:
        try:
            return ipaddress.ip_address(address).is_loopback
        except ValueError:
            return address == "localhost"

    # -- the guest's copies

    def is_copy(self, name: str) -> bool:
        """Whether a domain of this name is the guest or one of its migration copies."""
        return name in (self.guest, self.guest + INCOMING_SUFFIX, self.guest + MIGRATEDAWAY_SUFFIX)

    def report(self, host: str, domains: Iterable[DomainInfo]) -> None:
        """Publish ``domain.state`` for each copy of the guest on ``host`` whose state
        changed since the last look, and ``absent`` for a copy that is gone."""
        present = {d.name: d.state for d in domains if self.is_copy(d.name)}
        for (seen_host, name), state in list(self._seen.items()):
            if seen_host == host and name not in present and state != ABSENT:
                self._set(host, name, ABSENT)
        for name, state in present.items():
            self._set(host, name, state)

    def _set(self, host: str, name: str, state: str) -> None:
        if self._seen.get((host, name)) != state:
            self._seen[(host, name)] = state
            self._publish(DomainState(host=host, domain=name, state=state))

    def note(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self._publish(Note(text=text, level=level))

    @abc.abstractmethod
    async def domains(self, host: str) -> list[DomainInfo]:
        """The guest's copies and other domains on ``host`` (each driver asks its tool)."""

    async def copies(self, host: str) -> list[DomainInfo]:
        return [d for d in await self.domains(host) if self.is_copy(d.name)]

    async def check_boot(self, host: str) -> bool:
        """Look at both hosts before booting the guest on ``host``: True when it already
        runs there (nothing to do); Refused when any other copy exists anywhere."""
        here = await self.copies(host)
        there = await self.copies(self.other(host))
        if there:
            names = ", ".join(f"{d.name} ({d.state})" for d in there)
            raise Refused(
                f"the guest already exists on {self.other(host)}: {names}; booting it on "
                f"{host} too would put two copies on one shared disk and corrupt its filesystem"
            )
        if [d.name for d in here] == [self.guest]:
            if here[0].state in ALIVE:
                return True
            raise Refused(f"the guest is on {host} but {here[0].state}; destroy it first")
        if here:
            names = ", ".join(f"{d.name} ({d.state})" for d in here)
            raise Refused(f"{host} has a copy of the guest in an unexpected state: {names}")
        return False
