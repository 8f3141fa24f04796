"""The poller: looks at the lab every few seconds and publishes what changed.

A look asks the hypervisor driver for ``domains()`` and ``info()`` on both hypervisor
hosts, the initiator for its ``sessions()``, the target for its ``status()``. What
changed since the panes were last told is published as the events they draw
(``domain.state`` by the driver itself, ``host.resources``, ``initiator.session``,
``storage.exported`` / ``storage.unexported``); the poller also listens to the bus, so
what an action published counts as told. A host that could not be reached is tried
again, with a growing pause. No look starts while an action runs (``busy``), and an
action first lets a look in flight finish (briefly: it only looks), :meth:`yield_to`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from backend.config import LabConfig
from backend.drivers.base import DriverError, Publish
from backend.events import (
    Event,
    HostResources,
    InitiatorSession,
    Note,
    StorageExported,
    StorageUnexported,
)
from backend.lab import LabController
from backend.transport.base import CommandFailed, TransportError, polling
from backend.transport.hosts import Hosts

__all__ = ["POLL_S", "HostPoller"]

POLL_S = 5.0
"""Seconds between two looks at the lab while nothing runs."""
POLL_TIMEOUT_S = 30.0
"""A look that takes longer is given up (its commands are stopped) and tried next time."""
RETRY_FIRST_S, RETRY_MAX_S = 5.0, 60.0
"""A host that could not be reached is tried again after 5 s, 10 s, 20 s ... at most 60 s."""
POLL_YIELD_S = 2.0
"""An action (or close) lets a look in flight finish this long before it stops it."""

# A host's answer (they name host, command, stderr): noted, and looked at again next time.
_EXPECTED = (DriverError, CommandFailed, TransportError)


class HostPoller:
    """Looks at ``lab`` through ``controller()``'s drivers every ``poll_s`` while not
    ``busy()``; publishes what changed on ``publish``. Subscribe :meth:`seen` to the bus."""

    def __init__(
        self,
        lab: LabConfig,
        hosts: Hosts,
        publish: Publish,
        controller: Callable[[], LabController],
        *,
        busy: Callable[[], bool],
        poll_s: float = POLL_S,
    ) -> None:
        self._lab = lab
        self._hosts = hosts
        self._publish = publish
        self._controller = controller
        self._busy = busy
        self._poll_s = poll_s
        self._hypervisor_hosts = (lab.hypervisor.hosts[0], lab.hypervisor.hosts[1])
        self._seen: dict[tuple[str, str], object] = {}  # what the panes were last told
        self._notes: dict[str, str] = {}  # what went wrong on the last look, per part
        self._retry_at: dict[str, tuple[float, float]] = {}  # host -> (when, pause)
        self._loop: asyncio.Task[None] | None = None
        self._poll: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- what the panes were told ----------------------------------------------------------

    def seen(self, event: Event) -> None:
        """A bus subscriber: what the panes were told, whoever published it."""
        if isinstance(event, StorageExported):
            self._seen[("storage", event.iqn)] = True
        elif isinstance(event, StorageUnexported):
            self._seen[("storage", event.iqn)] = False
        elif isinstance(event, InitiatorSession):
            self._seen[("session", event.host)] = event.state
        elif isinstance(event, HostResources):
            self._seen[("resources", event.host)] = (event.free_memory_mb, event.total_memory_mb)

    def _changed(self, key: tuple[str, str], value: object, event: Event) -> None:
        """Publish ``event`` if ``value`` differs from what the panes were last told."""
        if key in self._seen and self._seen[key] == value:
            return
        self._seen[key] = value
        self._publish(event)

    def _note(self, part: str, text: str) -> None:
        """Say what went wrong once (until it changes or heals)."""
        if self._notes.get(part) != text:
            self._notes[part] = text
            self._publish(Note(text=text, level="warning"))

    # -- starting and stopping -------------------------------------------------------------

    def retry_later(self, errors: Mapping[str, TransportError | None]) -> None:
        """The hosts that could not be reached at start: tried again after RETRY_FIRST_S."""
        for name, error in errors.items():
            if error is not None:
                self._retry_at[name] = (time.monotonic() + RETRY_FIRST_S, RETRY_FIRST_S)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="poller")

    def wake(self) -> None:
        """Look at the lab now (as an action left it), not after the pause."""
        self._wake.set()

    async def stop(self) -> None:
        await self.yield_to()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None

    async def yield_to(self) -> None:
        """Let a look in flight finish (it is quick), or stop it if it is not."""
        poll = self._poll
        if poll is None or poll.done():
            return
        await asyncio.wait({poll}, timeout=POLL_YIELD_S)
        poll.cancel()

    # -- looking ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # an action that ends from now on wakes the next look
            if not self._busy():
                await self._poll_once()
            # asyncio.wait, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the event is set, and the poller would never stop.
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({woken}, timeout=self._poll_s)
            finally:
                woken.cancel()

    async def _poll_once(self) -> None:
        with polling():  # its commands are routine looks: the console's pane leaves them out
            poll = self._poll = asyncio.ensure_future(self._look())
        try:
            await asyncio.wait({poll}, timeout=POLL_TIMEOUT_S)
        finally:
            poll.cancel()  # a look that took too long (or the poller is stopping)
        if poll.done() and not poll.cancelled() and poll.exception() is not None:
            error = poll.exception()  # a bug, not a host's answer: say so once
            self._note("look", f"could not look at the lab: {type(error).__name__}: {error}")

    async def _look(self) -> None:
        await self._retry_hosts()
        first, second = self._hypervisor_hosts
        await asyncio.gather(
            self._look_at_storage(), self._look_at_host(first), self._look_at_host(second)
        )

    def _connected(self, host: str) -> bool:
        runner = self._hosts.get(host)
        return runner is not None and bool(getattr(runner, "connected", True))

    async def _retry_hosts(self) -> None:
        now = time.monotonic()
        due = [name for name, (when, _) in self._retry_at.items() if when <= now]
        if not due:
            return
        errors = await self._hosts.open(due)
        for name in due:
            pause = self._retry_at[name][1]
            if errors.get(name) is None:
                del self._retry_at[name]
            else:
                pause = min(pause * 2, RETRY_MAX_S)
                self._retry_at[name] = (time.monotonic() + pause, pause)

    async def _guarded(self, part: str, look: Awaitable[None]) -> None:
        """Run one part of a look; a failure is noted once (until it changes or heals)."""
        try:
            await look
        except _EXPECTED as exc:
            self._note(part, f"could not look at {part}: {exc}")
            return
        self._notes.pop(part, None)

    async def _look_at_host(self, host: str) -> None:
        if not self._connected(host):
            return
        await self._guarded(host, self._host_state(host))

    async def _host_state(self, host: str) -> None:
        controller = self._controller()
        hypervisor = controller.hypervisor
        await hypervisor.domains(host)  # the driver publishes domain.state when it changed
        info = await hypervisor.info(host)
        self._changed(
            ("resources", host),
            (info.free_memory_mb, info.total_memory_mb),
            HostResources(
                host=host,
                free_memory_mb=info.free_memory_mb,
                total_memory_mb=info.total_memory_mb,
                hypervisor_version=info.hypervisor_version,
            ),
        )
        iqn = self._lab.storage.iqn
        sessions = await controller.initiator.sessions(host)
        ours = next((s for s in sessions if s.iqn == iqn), None)
        state: Literal["logged-in", "logged-out"] = "logged-in" if ours else "logged-out"
        portal = ours.portal if ours is not None else str(self._lab.storage.portal)
        self._changed(
            ("session", host),
            state,
            InitiatorSession(host=host, iqn=iqn, portal=portal, state=state, changed=False),
        )

    async def _look_at_storage(self) -> None:
        storage = self._lab.storage
        if not self._connected(storage.host):
            return
        await self._guarded(storage.host, self._storage_state())

    async def _storage_state(self) -> None:
        storage = self._lab.storage
        status = await self._controller().target.status()
        found = status.find(storage.iqn)
        lun = next((x for x in found.luns if x.lun == storage.lun), None) if found else None
        if found is not None and lun is not None:
            event: Event = StorageExported(
                host=storage.host,
                iqn=storage.iqn,
                lun=storage.lun,
                backing=lun.backing or storage.device,
                changed=False,
            )
        else:
            event = StorageUnexported(host=storage.host, iqn=storage.iqn)
        self._changed(("storage", storage.iqn), lun is not None, event)
