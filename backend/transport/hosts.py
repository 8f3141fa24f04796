"""All the lab's hosts: one runner each, opened concurrently (jump hosts first)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator, Mapping

from backend.config import Host, LabConfig
from backend.transport.base import HostRunner, Publish, TransportError
from backend.transport.local import LocalRunner
from backend.transport.ssh import SshHost, SshTarget


def ssh_target(host: Host) -> SshTarget:
    passphrase = host.identity_passphrase
    return SshTarget(
        name=host.name,
        address=host.address,
        port=host.port,
        user=host.user,
        identity=str(host.identity) if host.identity is not None else None,
        passphrase=passphrase.reveal if passphrase is not None else None,
        known_hosts=str(host.known_hosts) if host.known_hosts is not None else None,
        host_key=host.host_key,
        connect_timeout_s=host.connect_timeout_s,
        keepalive_s=host.keepalive_s,
        plain_exec=host.transport == "plain-exec",
    )


# A migrating guest is silent while it is paused (Xen under TCG: tens of seconds). With
# the hosts' keepalive (5 s, 3 unanswered) miglab itself closed the benchmarks' connection
# there, ending sysbench mid-run; TCP outlasts such a pause, and so does this. A guest
# silent for longer than this is gone.
GUEST_KEEPALIVE_S = 5.0
GUEST_SILENCE_S = 600.0


def guest_target(lab: LabConfig) -> SshTarget:
    """How to reach the guest itself (benchmarks run in it over SSH)."""
    guest = lab.guest
    return SshTarget(
        name=guest.name,
        address=guest.address,
        port=guest.port,
        user=guest.user,
        identity=str(guest.identity) if guest.identity is not None else None,
        known_hosts=str(guest.known_hosts) if guest.known_hosts is not None else None,
        host_key=guest.host_key,
        keepalive_s=GUEST_KEEPALIVE_S,
        keepalive_count_max=math.ceil(GUEST_SILENCE_S / GUEST_KEEPALIVE_S),
        plain_exec=guest.transport == "plain-exec",
    )


class HostUnavailable(TransportError, KeyError):
    """A host that is not open (unreachable, or never opened)."""

    def __str__(self) -> str:
        return f"{self.host}: {self.message}"


class Hosts(Mapping[str, HostRunner]):
    """The runners of a lab, by host name. ``await hosts.open()`` connects them."""

    def __init__(self, lab: LabConfig, publish: Publish) -> None:
        self._lab = lab
        self._publish = publish
        self._runners: dict[str, HostRunner] = {}
        self.errors: dict[str, TransportError] = {}

    def __getitem__(self, name: str) -> HostRunner:
        try:
            return self._runners[name]
        except KeyError:
            reason = self.errors.get(name)
            why = reason.message if reason else "not opened"
            raise HostUnavailable(name, f"not connected: {why}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._runners)

    def __len__(self) -> int:
        return len(self._runners)

    async def open(self, names: Iterable[str] | None = None) -> dict[str, TransportError | None]:
        """Connect the named hosts (all by default) at once; a jump host before its users.

        Returns each host's error or None; never raises for an unreachable host.
        """
        wanted = list(names) if names is not None else list(self._lab.hosts)
        tasks: dict[str, asyncio.Task[HostRunner]] = {}

        def start(name: str) -> asyncio.Task[HostRunner]:
            if name not in tasks:
                tasks[name] = asyncio.get_running_loop().create_task(connect(name))
            return tasks[name]

        async def connect(name: str) -> HostRunner:
            host = self._lab.host(name)
            if host.is_local:
                return LocalRunner(name, self._publish)
            via = None
            if host.via is not None:
                jump = await start(host.via)
                if not isinstance(jump, SshHost):
                    raise TransportError(name, f"jump host {host.via} is local, not an SSH host")
                via = jump
            runner = SshHost(ssh_target(host), self._publish, via)
            await runner.connect()
            return runner

        for name in wanted:
            start(name)
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        outcome: dict[str, TransportError | None] = {}
        for name, task in tasks.items():
            error = task.exception()
            if error is None:
                self._runners[name] = task.result()
                self.errors.pop(name, None)
                outcome[name] = None
            else:
                wrapped = (
                    error
                    if isinstance(error, TransportError)
                    else TransportError(name, f"{type(error).__name__}: {error}")
                )
                if wrapped.host != name:  # its jump host failed
                    wrapped = TransportError(name, f"via {wrapped.host}: {wrapped.message}")
                self.errors[name] = wrapped
                outcome[name] = wrapped
        return {name: outcome[name] for name in wanted}

    async def open_guest(self) -> SshHost:
        """Connect to the guest over SSH (through its jump host if it has one)."""
        via = None
        if self._lab.guest.via is not None:
            jump = self[self._lab.guest.via]
            if not isinstance(jump, SshHost):
                raise TransportError(self._lab.guest.name, "the guest's jump host is not SSH")
            via = jump
        guest = SshHost(guest_target(self._lab), self._publish, via)
        await guest.connect()
        return guest

    async def close(self) -> None:
        # Users of a jump host first, so their tunnels close before it does.
        tunnelled = [r for r in self._runners.values() if getattr(r, "_via", None) is not None]
        direct = [r for r in self._runners.values() if r not in tunnelled]
        for group in (tunnelled, direct):
            await asyncio.gather(*(r.close() for r in group), return_exceptions=True)
        self._runners.clear()
