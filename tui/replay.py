"""Replay a saved session log in the console, at any speed.

The events are published again exactly as the log holds them (their own times,
their own order), so the screen is the one the session showed. The replay keeps a
session clock: ``position`` advances at ``speed`` session seconds per wall second,
stops while paused, and events are published when the clock reaches their time.
Speed 0 publishes everything as fast as the console takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path

from backend.events import Event
from backend.session import Session, read_session
from tui.backend_api import EventCallback, LabLayout, ReadOnlyActions

# Speed 0 yields to the event loop every this many events, so keys keep working.
_BURST = 500


class ReplayBackend(ReadOnlyActions):
    """A :class:`~tui.backend_api.ConsoleBackend` that plays one session log."""

    refusal = "a replay shows a past session; it cannot change hosts"

    def __init__(self, session: Session, *, speed: float = 1.0) -> None:
        if speed < 0 or math.isnan(speed):
            raise ValueError(f"replay speed must be >= 0, got {speed}")
        self._session = session
        self._events: list[Event] = sorted(session.events, key=lambda e: e.t)
        header_t = session.header.get("t")
        first = self._events[0].t if self._events else None
        start = header_t if isinstance(header_t, int | float) else first
        if start is None:
            start = time.time()
        if first is not None:
            start = min(start, first)
        self._start = float(start)
        self._end = self._events[-1].t if self._events else self._start
        lab = session.header.get("lab")
        self._layout = LabLayout.from_lab_dump(lab if isinstance(lab, dict) else {})
        self._simulated = bool(session.header.get("simulated"))
        self._callbacks: list[EventCallback] = []
        self._speed = speed
        self._paused = False
        # The session clock: position = anchor_pos + (monotonic - anchor_wall) * speed.
        self._anchor_pos = self._start
        self._anchor_wall = time.monotonic()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._published = 0

    @classmethod
    def open(cls, path: str | Path, *, speed: float = 1.0) -> ReplayBackend:
        """Read the log now (blocking: call it before the event loop, or in a thread)."""
        return cls(read_session(path), speed=speed)

    # -- what the console shows ---------------------------------------------------------

    @property
    def layout(self) -> LabLayout:
        return self._layout

    @property
    def simulated(self) -> bool:
        return self._simulated

    @property
    def readonly(self) -> bool:
        return True

    @property
    def session_log(self) -> Path:
        return self._session.path

    @property
    def session(self) -> Session:
        return self._session

    @property
    def session_start(self) -> float:
        return self._start

    @property
    def duration(self) -> float:
        return self._end - self._start

    @property
    def published(self) -> int:
        """How many events have been published so far."""
        return self._published

    @property
    def finished(self) -> bool:
        return self._published >= len(self._events)

    def clock(self) -> float:
        if self.finished:
            return self._end
        if self._paused or self._speed == 0:
            return self._anchor_pos
        return self._anchor_pos + (time.monotonic() - self._anchor_wall) * self._speed

    # -- controls ---------------------------------------------------------------------

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        if speed < 0 or math.isnan(speed):
            raise ValueError(f"replay speed must be >= 0, got {speed}")
        self._reanchor()
        self._speed = speed
        self._changed.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def toggle_pause(self) -> None:
        self._reanchor()
        self._paused = not self._paused
        self._changed.set()

    def _reanchor(self) -> None:
        self._anchor_pos = self.clock()
        self._anchor_wall = time.monotonic()

    # -- the backend protocol ------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        self._anchor_wall = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._play(), name="replay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_finished(self) -> None:
        """Return once every event has been published (tests, benchmarks)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _play(self) -> None:
        burst = 0
        for event in self._events:
            while True:
                if self._paused:
                    await self._wait_change(None)
                    continue
                if self._speed == 0:
                    break
                delay = (event.t - self.clock()) / self._speed
                if delay <= 0.001:
                    break
                await self._wait_change(delay)
            if self._speed == 0:  # the clock is where the replay got to
                self._anchor_pos = max(self._anchor_pos, event.t)
            for callback in self._callbacks:
                callback(event)
            self._published += 1
            burst += 1
            if burst >= _BURST:
                burst = 0
                await asyncio.sleep(0)

    async def _wait_change(self, timeout: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
