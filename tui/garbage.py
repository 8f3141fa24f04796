"""When the console's garbage collector looks at everything: between keys, not in them.

CPython's collector (generational up to 3.13) makes a full pass, over every object not
frozen, once enough objects have outlived the two younger passes. While traces stream,
and more so after a theme change (thousands of newly drawn lines), that came every few
seconds, and one took 10-35 ms on the bench's loaded machine: about one press of ``t``
in eight waited behind one, its repaint 60-76 ms where the others took 25-45 ms.

So once start-up is over the console takes the full passes over (:class:`FullPasses`):
start-up's objects are frozen (never looked at again), the interpreter keeps its young
passes (under 3 ms each here), and the full ones run from a timer when no key or mouse
event has come for :data:`IDLE_S`, at most every :data:`MIN_GAP_S`. A stream of keys
holds one back :data:`MAX_GAP_S` at most; then it runs at the first tick with no input
in the last :data:`BUSY_IDLE_S`. An incremental collector (planned for CPython 3.14)
ignores the third threshold: there the timer's passes only add to its own.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable

IDLE_S = 1.0
"""No input for this long: a full pass may run (a person reading the screen)."""
MIN_GAP_S = 5.0
"""Full passes at most this often (the interpreter's own came every 2-6 s)."""
MAX_GAP_S = 30.0
"""Keys never hold a full pass back longer than this; cyclic garbage waits no longer."""
BUSY_IDLE_S = 0.1
"""Overdue, a pass runs at the first tick this long after the last input."""
TICK_S = 0.25
"""How often the console asks whether a full pass is due."""
NEVER = 1 << 30
"""The third threshold while the console makes the full passes: the interpreter's
count of younger passes never gets there."""


class FullPasses:
    """The console's full garbage-collector passes, made when no key waits for them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._kept: tuple[int, int, int] | None = None
        self.last_input = -math.inf
        self.last_pass = clock()
        self.passes = 0
        """Full passes made here (for tests and the bench)."""

    @property
    def active(self) -> bool:
        return self._kept is not None

    def take_over(self) -> None:
        """Freeze what start-up made, and from now on make the full passes here.

        Frozen objects are still freed when nothing refers to them; only a reference
        cycle among them would stay (start-up makes few). Before the freeze, a full
        pass looked at ~190,000 objects: 80 ms on the bench's machine.
        """
        gc.collect()
        gc.freeze()
        if self._kept is None:
            self._kept = gc.get_threshold()
            young, middle, _ = self._kept
            gc.set_threshold(young, middle, NEVER)
        self.last_pass = self._clock()

    def give_back(self) -> None:
        """The interpreter's thresholds as they were (the frozen objects stay frozen)."""
        if self._kept is not None:
            gc.set_threshold(*self._kept)
            self._kept = None

    def input_seen(self) -> None:
        self.last_input = self._clock()

    def due(self) -> bool:
        now = self._clock()
        since_pass, quiet = now - self.last_pass, now - self.last_input
        return (since_pass >= MIN_GAP_S and quiet >= IDLE_S) or (
            since_pass >= MAX_GAP_S and quiet >= BUSY_IDLE_S
        )

    def tick(self) -> bool:
        """Make a full pass if one is due; True if it did."""
        if self._kept is None or not self.due():
            return False
        gc.collect()
        self.last_pass = self._clock()
        self.passes += 1
        return True
