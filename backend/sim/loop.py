"""An event loop that tells the simulated clock when this process has nothing to do.

``miglab run --sim`` runs everything in one process, on one event loop: the simulated
hosts (asyncssh servers), the transport that reaches them over loopback SSH, the
drivers and the experiment runner. If simulated time followed the wall clock, when a
command reaches a simulated host would depend on how fast this machine is, and two runs
with the same seed would differ. :class:`SimEventLoop` tells an idle hook (the
:class:`~backend.sim.clock.IdleRuntime`) each time it is about to wait with nothing to
run: no callback is ready, no socket has data, no job is out in a thread. Only then
does simulated time move, one tick at a time, so every command, every line a simulated
program prints and every reply the runner reacts to happens between the same two ticks
in every run.

Loopback TCP delivers a write to the peer's socket before ``send`` returns (Linux
processes loopback packets in the sender's context), so "no socket has data" covers
bytes on their way between the client and the simulated servers.

::

    exit_code = backend.sim.loop.run(main())   # like asyncio.run, on a SimEventLoop
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

__all__ = ["IdleHook", "SimEventLoop", "run"]

T = TypeVar("T")

IdleHook = Callable[[float | None], float | None]
"""``hook(may_wait_s)``, called when the loop would wait (None: for ever) with nothing to
run; returns how long it may wait instead (0: not at all, the hook scheduled work)."""


class _IdleSelector(selectors.BaseSelector):
    """The platform's selector, asking ``hook`` before each wait with nothing to run."""

    def __init__(self) -> None:
        self._inner = selectors.DefaultSelector()
        self.hook: IdleHook | None = None
        self.busy: Callable[[], bool] = lambda: False

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        hook = self.hook
        # A zero timeout means callbacks are ready: the loop is busy, not idle.
        if hook is None or (timeout is not None and timeout <= 0):
            return self._inner.select(timeout)
        ready = self._inner.select(0)
        if ready or self.busy():
            return ready or self._inner.select(timeout)
        wait = hook(timeout)
        if wait is not None and wait <= 0:
            return []
        return self._inner.select(wait)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()


class SimEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop that calls an idle hook when it has nothing to do."""

    def __init__(self) -> None:
        self._idle_selector = _IdleSelector()
        super().__init__(self._idle_selector)
        self._in_threads = 0
        self._idle_selector.busy = lambda: self._in_threads > 0

    def set_idle_hook(self, hook: IdleHook | None) -> None:
        """Call ``hook`` whenever the loop is idle (None: stop calling it)."""
        self._idle_selector.hook = hook

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        # A job in a thread (a file write, a name lookup) is work: the loop is not idle.
        future = super().run_in_executor(executor, func, *args)
        self._in_threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, future: asyncio.Future[Any]) -> None:
        self._in_threads -= 1


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new :class:`SimEventLoop`, as :func:`asyncio.run` does."""
    loop = SimEventLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during miglab's simulated run shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
