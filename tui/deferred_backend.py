"""A console backend made after the console's first frame.

Making a live backend imports the SSH stack, the drivers and the experiment runner, and
``miglab demo`` starts its simulated lab (SSH servers, keys) first: together more than
half a second that the first frame does not need. The first frame needs only the lab's
layout (its host and guest names), whether it is simulated or read-only, and when the
session began. :class:`DeferredBackend` knows those; the real backend is made in
:meth:`~DeferredBackend.start`, which the main screen calls once it is on the screen.

Until then the session's clock stands still at its start, a subscriber is kept and handed
on, and an action waits for the backend (a key pressed in the first half second runs
when the lab is there) or, if it could not be made, fails with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tui.backend_api import (
    ActionRefused,
    ConsoleBackend,
    EventCallback,
    LabLayout,
    PingControls,
    RecordsEndStatus,
    ScenarioInfo,
)

if TYPE_CHECKING:
    from backend.config import LabConfig
    from backend.drivers.base import HostCommand
    from backend.session import EndStatus
    from backend.sim.lab import SimulatedLab

Make = Callable[[float, contextlib.AsyncExitStack], Awaitable[ConsoleBackend]]
"""Makes the real backend, given the session's start (its clock's t0) and an exit stack
for what must be closed after the backend (a simulated lab)."""


async def load_modules(*names: str) -> None:
    """Import ``names`` in a worker thread: a module that takes a few hundred milliseconds
    to import would otherwise stop the console (keys, drawing) while it does."""

    def load() -> None:
        for name in names:
            importlib.import_module(name)

    await asyncio.to_thread(load)


async def make_live_backend(
    lab: LabConfig,
    *,
    readonly: bool,
    session_start: float,
    log_dir: Path | None = None,
    simulated: bool = False,
    sim: SimulatedLab | None = None,
    quick: bool = False,
) -> ConsoleBackend:
    """:func:`tui.live_backend.make_backend` on ``lab``, its modules imported and the
    built-in scenarios read in a worker thread (neither stops the console meanwhile).
    ``log_dir``: where the session log goes (default: the live backend's)."""
    await load_modules("tui.live_backend")
    from backend.experiments.scenarios import builtin_scenarios
    from tui.live_backend import DEFAULT_LOG_DIR, make_backend

    await asyncio.to_thread(builtin_scenarios)  # read once and cached
    return make_backend(
        lab,
        readonly=readonly,
        simulated=simulated,
        sim=sim,
        log_dir=DEFAULT_LOG_DIR if log_dir is None else log_dir,
        quick=quick,
        session_start=session_start,
    )


class DeferredBackend:
    """A :class:`~tui.backend_api.ConsoleBackend` whose real one is made by ``make`` when
    the console starts it. Every call after that goes to the real backend."""

    def __init__(self, layout: LabLayout, make: Make, *, simulated: bool, readonly: bool) -> None:
        self._layout = layout
        self._make = make
        self._simulated = simulated
        self._readonly = readonly
        self._session_start = time.time()
        self._callbacks: list[EventCallback] = []
        self._inner: ConsoleBackend | None = None
        self._making: asyncio.Future[None] | None = None  # done once make() has returned
        self._ready: asyncio.Future[ConsoleBackend] | None = None  # done once it started
        self._cleanup = contextlib.AsyncExitStack()
        self._ping_wanted: tuple[float | None] | None = None
        self._end_status: EndStatus | None = None
        self._closed = False

    # -- the real backend ------------------------------------------------------------------

    @property
    def start_error(self) -> Exception | None:
        """Why the real backend could not be made, if it could not."""
        ready = self._ready
        if self._inner is not None or ready is None or not ready.done() or ready.cancelled():
            return None
        error = ready.exception()
        return error if isinstance(error, Exception) else None

    @property
    def inner(self) -> ConsoleBackend | None:
        """The real backend, once made (it may still be starting)."""
        return self._inner

    async def _backend(self) -> ConsoleBackend:
        """The real backend once it has started: what every action waits for."""
        if self._ready is None:
            raise ActionRefused("the lab is not started yet")
        return await asyncio.shield(self._ready)

    async def start(self) -> None:
        if self._ready is not None:
            await self._backend()
            return
        if self._closed:
            raise ActionRefused("the console is closing")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[ConsoleBackend] = loop.create_future()
        making: asyncio.Future[None] = loop.create_future()
        self._ready, self._making = ready, making
        try:
            backend = await self._make(self._session_start, self._cleanup)
        except BaseException as error:
            # An action asked later gets the reason; a stopped start is a refusal too.
            reason = (
                error if isinstance(error, Exception) else ActionRefused("the lab did not start")
            )
            ready.set_exception(reason)
            ready.exception()  # retrieved: asyncio need not warn about it
            await self._cleanup.aclose()
            making.set_result(None)
            raise
        self._inner = backend
        self._cleanup.push_async_callback(backend.close)
        for callback in self._callbacks:
            backend.subscribe(callback)
        if self._ping_wanted is not None and isinstance(backend, PingControls):
            backend.set_ping_interval(self._ping_wanted[0])
        if self._end_status is not None and isinstance(backend, RecordsEndStatus):
            backend.set_end_status(self._end_status)
        making.set_result(None)
        try:
            await backend.start()
        finally:
            # Actions go ahead once it has started (its hosts connected), as they would
            # have without the deferral; a start that failed leaves a backend that works
            # as far as it can (a log that cannot be written), as it did before.
            ready.set_result(backend)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._making is not None:
            # A backend being made is closed once it is there (a start under way is the
            # real backend's to stop, as it always was).
            await asyncio.shield(self._making)
        await self._cleanup.aclose()

    # -- what the first frame shows ----------------------------------------------------------

    @property
    def layout(self) -> LabLayout:
        return self._layout

    @property
    def simulated(self) -> bool:
        return self._simulated

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def session_log(self) -> Path | None:
        inner = self.inner
        return None if inner is None else inner.session_log

    @property
    def session_start(self) -> float:
        return self._session_start

    def clock(self) -> float:
        inner = self.inner
        return self._session_start if inner is None else inner.clock()

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)
        inner = self.inner
        if inner is not None:
            inner.subscribe(callback)

    def scenarios(self) -> Sequence[ScenarioInfo]:
        inner = self.inner
        if inner is None:
            raise ActionRefused("the lab is still starting; try again in a moment")
        return inner.scenarios()

    # -- the console's ping of the guest, and how the session ended ------------------------

    @property
    def ping_interval_s(self) -> float | None:
        inner = self.inner
        if isinstance(inner, PingControls):
            return inner.ping_interval_s
        return None if self._ping_wanted is None else self._ping_wanted[0]

    def set_ping_interval(self, interval_s: float | None) -> None:
        inner = self.inner
        if isinstance(inner, PingControls):
            inner.set_ping_interval(interval_s)
        else:
            self._ping_wanted = (interval_s,)

    def set_end_status(self, status: EndStatus) -> None:
        inner = self.inner
        if isinstance(inner, RecordsEndStatus):
            inner.set_end_status(status)
        elif self._end_status != "crashed":
            self._end_status = status

    # -- actions: each waits for the backend -------------------------------------------------

    async def prepare(self) -> None:
        await (await self._backend()).prepare()

    async def boot(self, host: str) -> None:
        await (await self._backend()).boot(host)

    async def migrate(self, dest: str) -> None:
        await (await self._backend()).migrate(dest)

    async def run_scenario(self, scenario_id: str) -> None:
        await (await self._backend()).run_scenario(scenario_id)

    async def cancel(self) -> None:
        await (await self._backend()).cancel()

    async def plan_cancel(self) -> list[HostCommand]:
        return await (await self._backend()).plan_cancel()

    async def plan_shutdown(self, host: str) -> list[HostCommand]:
        return await (await self._backend()).plan_shutdown(host)

    async def shutdown_guest(self, host: str) -> None:
        await (await self._backend()).shutdown_guest(host)

    async def plan_destroy(self, host: str) -> list[HostCommand]:
        return await (await self._backend()).plan_destroy(host)

    async def destroy_guest(self, host: str) -> None:
        await (await self._backend()).destroy_guest(host)

    async def plan_logout(self, host: str) -> list[HostCommand]:
        return await (await self._backend()).plan_logout(host)

    async def logout(self, host: str) -> None:
        await (await self._backend()).logout(host)

    async def plan_unexport(self) -> list[HostCommand]:
        return await (await self._backend()).plan_unexport()

    async def unexport(self) -> None:
        await (await self._backend()).unexport()
