"""The one clock of the simulated lab, and two ways to run it.

Every simulated host and every program running on one waits on the same model time
(``model.t``, simulated seconds). A :class:`Runtime` advances the model and wakes the
programs whose moment has come:

* :class:`WallRuntime` follows the wall clock, ``speed`` simulated seconds per real
  second (the demo, ``miglab sim serve``);
* :class:`IdleRuntime` follows the wall clock too, but moves only while everything in
  this process waits (:mod:`backend.sim.loop`): ``miglab run --sim``, whose runs are
  then the same for the same seed, however fast the machine;
* :class:`VirtualRuntime` jumps straight to the next moment any program waits for, as
  a discrete-event simulator does: a six-minute migration takes a fraction of a second
  (the fidelity tests).

Programs only ever wait through :meth:`Runtime.until` (or :meth:`Runtime.join`), so
both runtimes drive them identically. Simulated wall-clock time (what ``ping -D``
prints, what the parsers' ``clock`` should return) is ``epoch + model.t``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from backend.sim.loop import SimEventLoop
from backend.sim.model import TICK, Model

T = TypeVar("T")

TickListener = Callable[[Model], None]

MAX_TICKS_PER_WAKE = 2000
"""A wall runtime that fell behind catches up at most this many ticks at a time, so the
event loop keeps serving the SSH channels."""
MAX_LAG_S = 2.0
"""An idle runtime that fell behind the wall clock by more than this forgets the rest."""
MIN_WAKE_S = 0.01
"""Wall seconds between wake-ups at least: at speed 50 a wake-up runs ~5 ticks."""


class Runtime:
    """The shared clock: the model, its epoch, and waiting for a simulated moment."""

    def __init__(self, model: Model, epoch: float | None = None) -> None:
        self.model = model
        self.epoch = time.time() if epoch is None else epoch
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._listeners: list[TickListener] = []

    def now(self) -> float:
        """Simulated seconds since the lab started."""
        return self.model.t

    def wall(self, t: float | None = None) -> float:
        """Simulated wall-clock time (seconds since the epoch) of ``t`` (default: now)."""
        return self.epoch + (self.model.t if t is None else t)

    def clock(self) -> float:
        """:meth:`wall` of now: a ``Clock`` for the probes' parsers."""
        return self.wall()

    def on_tick(self, listener: TickListener) -> None:
        """Call ``listener(model)`` after every tick (e.g. to drop a dead guest's sessions)."""
        self._listeners.append(listener)

    async def until(self, t: float) -> None:
        """Return once the model has reached simulated time ``t``."""
        if self.model.t >= t - 1e-9:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (t, next(self._order), future))
        await self._wait(future)

    async def sleep(self, seconds: float) -> None:
        await self.until(self.model.t + seconds)

    async def _wait(self, future: asyncio.Future[None]) -> None:
        await future

    async def join(self, task: asyncio.Task[T]) -> T:
        """Wait for a task started with :meth:`spawn` (the virtual runtime must know)."""
        return await task

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        return asyncio.get_running_loop().create_task(coro)

    def _tick(self) -> None:
        self.model.step()
        for listener in self._listeners:
            listener(self.model)
        self._wake()

    def _wake(self) -> None:
        now = self.model.t
        while self._waiters and self._waiters[0][0] <= now + 1e-9:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)


class WallRuntime(Runtime):
    """Simulated time that runs ``speed`` times as fast as the wall clock."""

    def __init__(self, model: Model, speed: float = 1.0, epoch: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        super().__init__(model, epoch)
        self.speed = float(speed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for _, _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start_wall, start_t = loop.time(), self.model.t
        while True:
            target = start_t + (loop.time() - start_wall) * self.speed
            done = 0
            while self.model.t + TICK <= target + 1e-9 and done < MAX_TICKS_PER_WAKE:
                self._tick()
                done += 1
            next_tick = start_wall + (self.model.t + TICK - start_t) / self.speed
            await asyncio.sleep(max(MIN_WAKE_S, next_tick - loop.time()))


MAX_LEAP_TICKS = 100_000
"""At ``speed`` max, a leap ends after this many ticks even if nobody waits sooner (the
model may run with no program waiting on it): the loop then looks at its sockets."""


class IdleRuntime(Runtime):
    """Simulated time that moves one tick at a time, only while this process is idle.

    It runs on a :class:`~backend.sim.loop.SimEventLoop`: a tick happens when the loop
    has nothing to run (every simulated program waits on the clock, no command or
    output is on its way over SSH, the caller waits too), and at most ``speed``
    simulated seconds pass per wall second. A busy moment delays the clock instead of
    letting it run ahead, so what happens at which tick depends on the seed and on
    what the caller does, never on how fast this machine is.

    ``speed`` infinite (``--speed max``): no pacing, and when the loop is idle the clock
    leaps tick after tick, without going back to the loop, to the first tick at which a
    program's wait is over (or the guest powers on or off: its SSH connections react).
    Ticks at which nobody wakes change nothing any program sees, so a run is the same
    as at any finite speed, only bound by the CPU.
    """

    def __init__(self, model: Model, speed: float = 1.0, epoch: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self.leaps = 0
        """Leaps made at speed max, for the benchmark (ticks per leap = ticks / leaps)."""
        # A whole second: times printed with a fixed number of decimals (ping -D) then
        # read the same after the epoch in every run.
        super().__init__(model, float(math.floor(time.time())) if epoch is None else epoch)
        self.speed = float(speed)
        self._loop: SimEventLoop | None = None
        self._due = 0.0
        self._ticking = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, SimEventLoop):
            raise RuntimeError("IdleRuntime runs on a SimEventLoop (backend.sim.loop.run)")
        if self._loop is None:
            self._loop = loop
            self._due = loop.time() + TICK / self.speed
            loop.set_idle_hook(self._idle)

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.set_idle_hook(None)
        for _, _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    def _idle(self, may_wait_s: float | None) -> float | None:
        loop = self._loop
        if loop is None or self._ticking:
            return may_wait_s
        if math.isinf(self.speed):
            self._ticking = True
            loop.call_soon(self._leap)
            return 0.0
        now = loop.time()
        if now < self._due:
            wait = self._due - now
            return wait if may_wait_s is None else min(may_wait_s, wait)
        # Fell far behind (a long busy stretch): resume the pace from now, no burst.
        self._due = max(self._due, now - MAX_LAG_S) + TICK / self.speed
        self._ticking = True
        loop.call_soon(self._step)
        return 0.0

    def _step(self) -> None:
        self._ticking = False
        if self._loop is not None:  # not stopped meanwhile
            self._tick()

    def _leap(self) -> None:
        self._ticking = False
        if self._loop is None:
            return
        self.leaps += 1
        status = self.model.guest.status
        # Nobody waits on the clock (something waits on a real timer): one tick at a time.
        ticks = MAX_LEAP_TICKS if self._pending() else 1
        for _ in range(ticks):
            self.model.step()
            for listener in self._listeners:
                listener(self.model)
            if self._due_now() or self.model.guest.status != status:
                break
        self._wake()

    def _pending(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0][2].done():  # cancelled waits (a program stopped)
            heapq.heappop(waiters)
        return bool(waiters)

    def _due_now(self) -> bool:
        return self._pending() and self._waiters[0][0] <= self.model.t + 1e-9


class VirtualRuntime(Runtime):
    """Simulated time that jumps to the next moment a program waits for.

    Run a scenario with ``await runtime.run(main())``; start concurrent programs with
    :meth:`spawn`. Time moves only when every program is waiting on the clock, so the
    result depends on the seed and the scenario alone, never on the machine's speed.
    """

    def __init__(self, model: Model, epoch: float = 1_800_000_000.0) -> None:
        super().__init__(model, epoch)
        self._live = 0
        self._blocked: set[asyncio.Future[None]] = set()
        self._failure: BaseException | None = None

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._live += 1
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._live -= 1
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def _wait(self, future: asyncio.Future[None]) -> None:
        self._blocked.add(future)
        try:
            await future
        finally:
            self._blocked.discard(future)

    async def join(self, task: asyncio.Task[T]) -> T:
        if not task.done():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task.add_done_callback(lambda _: self._release(future))
            await self._wait(future)
        return task.result()

    def _wake(self) -> None:
        now = self.model.t
        while self._waiters and self._waiters[0][0] <= now + 1e-9:
            self._release(heapq.heappop(self._waiters)[2])

    def _release(self, future: asyncio.Future[None]) -> None:
        # Runnable again: no longer counted as waiting, even before it resumes.
        if not future.done():
            future.set_result(None)
        self._blocked.discard(future)

    async def run(self, main: Coroutine[Any, Any, T], *, limit_s: float = 86_400.0) -> T:
        """Run ``main`` (and what it spawns) to completion on simulated time."""
        task = self.spawn(main)
        while True:
            await self._settle(task)
            if self._failure is not None:
                failure, self._failure = self._failure, None
                for _, _, future in self._waiters:
                    future.cancel()
                raise failure
            if task.done():
                return task.result()
            pending = [w for w in self._waiters if not w[2].done()]
            if not pending:
                raise RuntimeError("every simulated program waits, and not on the clock")
            target = min(pending)[0]
            if target > limit_s:
                raise RuntimeError(f"the scenario ran past {limit_s:g} simulated seconds")
            while self.model.t < target - 1e-9:
                self._tick()
            self._wake()

    async def _settle(self, main: asyncio.Task[Any]) -> None:
        """Let every program run until each one waits on the clock or has ended."""
        for _ in range(1_000_000):
            if main.done() or self._failure is not None:
                return
            if len(self._blocked) >= self._live:
                return
            await asyncio.sleep(0)
        raise RuntimeError("a simulated program waits on something other than the clock")
