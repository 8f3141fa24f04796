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
import heapq
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from backend.aio import wait_for
from backend.events import Event
from backend.session import Session, SessionLog, read_session
from tui.backend_api import EventCallback, LabLayout, ReadOnlyActions

# Speed 0 yields to the event loop every this many events, so keys keep working.
_BURST = 500
# Events held back to be put in time order when a log is read as it plays.
_REORDER = 10_000


def _timed(events: Iterable[Event]) -> Iterator[Event]:
    """The events that have a time: a reading the tool printed no time for (an imported
    BusyBox ping) has no place on the replay's clock; ``miglab report`` counts it."""
    return (event for event in events if event.t is not None)


def _in_time_order(events: Iterable[Event], window: int) -> Iterator[Event]:
    """``events`` sorted by time (equal times in their order) as far as a window of
    ``window`` events can: the logs' disorder is a fraction of a second."""
    held: list[tuple[float, int, Event]] = []
    for number, event in enumerate(events):
        heapq.heappush(held, (event.t, number, event))
        if len(held) > window:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]


class ReplayBackend(ReadOnlyActions):
    """A :class:`~tui.backend_api.ConsoleBackend` that plays one session log.

    Opened from a file (:meth:`open`), the log is read as it plays, a line at a time:
    the first frame does not wait for the whole log, and memory does not grow with it.
    Events are put in time order through a window of the next :data:`_REORDER` events
    (a parser may date a reading a little before an event logged ahead of it); the
    duration is known once the last event has been read.
    """

    refusal = "a replay shows a past session; it cannot change hosts"

    def __init__(
        self, session: Session, *, speed: float = 1.0, stream: Iterator[Event] | None = None
    ) -> None:
        """Replay ``session``'s events; or, with ``stream``, those events as they come
        (``session`` then gives the header)."""
        if speed < 0 or math.isnan(speed):
            raise ValueError(f"replay speed must be >= 0, got {speed}")
        self._session = session
        if stream is None:
            ordered = sorted(_timed(session.events), key=lambda e: e.t)
            self._source: Iterator[Event] = iter(ordered)
            last = ordered[-1].t if ordered else None
        else:
            self._source = _in_time_order(_timed(stream), _REORDER)
            last = None
        self._head: Event | None = next(self._source, None)  # the next event to publish
        header_t = session.header.get("t")
        first = self._head.t if self._head is not None else None
        start = header_t if isinstance(header_t, int | float) else first
        if start is None:
            start = time.time()
        if first is not None:
            start = min(start, first)
        self._start = float(start)
        self._end = last if last is not None else (first if first is not None else self._start)
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
        self._log: SessionLog | None = None
        self._streamed = stream is not None

    @classmethod
    def open(cls, path: str | Path, *, speed: float = 1.0) -> ReplayBackend:
        """Open the log and read its header and first event (blocking, but only that:
        the rest is read as the replay plays). Raises SessionLogError."""
        log = SessionLog(path)
        try:
            session = Session(path=log.path, header=log.header)
            backend = cls(session, speed=speed, stream=log.events())
        except BaseException:
            log.close()
            raise
        backend._log = log
        if backend._head is None:
            backend._close_log()
        return backend

    @property
    def empty(self) -> bool:
        """True if the log has no event at all to replay."""
        return self._published == 0 and self._head is None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

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
        """The whole session. Of a replay read as it plays, the log is read whole on first
        use, apart from the replay (the console never asks: only tools and tests do)."""
        if self._streamed:
            self._session = read_session(self._session.path)
            self._streamed = False
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
        return self._head is None

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
        self._close_log()

    async def wait_finished(self) -> None:
        """Return once every event has been published (tests, benchmarks)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _play(self) -> None:
        burst = 0
        while (event := self._head) is not None:
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
            self._end = max(self._end, event.t)
            self._head = next(self._source, None)  # read from the log as it plays
            if self._head is None:
                self._close_log()
            burst += 1
            if burst >= _BURST:
                burst = 0
                await asyncio.sleep(0)

    async def _wait_change(self, timeout: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_for(self._changed.wait(), timeout)
