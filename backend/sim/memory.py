"""Guest memory as 4 KiB pages, and which of them the guest has dirtied since the last look.

Pre-copy migration cares about one number per round: how many distinct pages the
guest wrote since the hypervisor last cleaned its dirty log. Tracking 262 144 bits per
tick would be slow and tell nothing more, so memory is a set of *regions*, each a
working set that one activity writes to, and the model keeps the expected number of
distinct dirty pages in each:

* ``random`` writes (a kernel compile's heaps, the page cache under dbench): with
  ``r`` page writes per second spread over ``n`` pages, the dirty count ``d`` grows as
  ``n - (n - d) * exp(-r * dt / n)``: fast at first, then saturating at ``n``.
* ``sequential`` writes (the RAM dirtier's ``dd`` sweeping its file): every write hits
  a page not yet written this round until the whole region is dirty, so ``d`` grows as
  ``min(n, d + r * dt)``.

Regions never overlap, and their sizes add up to at most the guest's memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

PAGE_SIZE = 4096
PAGES_PER_MIB = 1024 * 1024 // PAGE_SIZE

Pattern = Literal["random", "sequential"]


@dataclass
class Region:
    """One working set: ``pages`` pages written ``rate`` times a second in ``pattern``."""

    name: str
    pages: int
    rate: float
    pattern: Pattern = "random"
    dirty: float = 0.0

    def advance(self, dt: float, speed: float = 1.0) -> None:
        """Let ``dt`` seconds of writing pass, at ``speed`` times the region's own rate."""
        if dt <= 0 or self.pages <= 0 or self.rate <= 0 or speed <= 0:
            return
        writes = self.rate * speed * dt
        if self.pattern == "sequential":
            self.dirty = min(float(self.pages), self.dirty + writes)
        else:
            clean = self.pages - self.dirty
            self.dirty = self.pages - clean * math.exp(-writes / self.pages)


class GuestMemory:
    """The guest's pages and its working sets."""

    def __init__(self, memory_mib: int) -> None:
        self.pages = memory_mib * PAGES_PER_MIB
        self.regions: dict[str, Region] = {}

    @property
    def used_pages(self) -> int:
        return sum(r.pages for r in self.regions.values())

    def set_region(self, name: str, pages: int, rate: float, pattern: Pattern = "random") -> Region:
        """Add or replace a working set; its size is capped by the memory left over."""
        old = self.regions.pop(name, None)
        free = self.pages - self.used_pages
        region = Region(name, max(0, min(int(pages), free)), float(rate), pattern)
        if old is not None:
            region.dirty = min(old.dirty, float(region.pages))
        self.regions[name] = region
        return region

    def remove_region(self, name: str) -> None:
        """A working set that is gone: its dirty pages stay dirty until the next clean."""
        region = self.regions.pop(name, None)
        if region is not None and region.dirty > 0:
            leftover = self.regions.setdefault("(freed)", Region("(freed)", 0, 0.0, "random", 0.0))
            leftover.pages += round(region.dirty)
            leftover.dirty += region.dirty

    def advance(self, dt: float, speeds: dict[str, float] | None = None) -> None:
        for region in self.regions.values():
            region.advance(dt, 1.0 if speeds is None else speeds.get(region.name, 1.0))

    def dirty(self) -> int:
        """Distinct pages written since the last :meth:`clean`."""
        return round(sum(r.dirty for r in self.regions.values()))

    def clean(self) -> int:
        """Read and reset the dirty log (Xen's ``XEN_DOMCTL_SHADOW_OP_CLEAN``)."""
        count = self.dirty()
        for region in self.regions.values():
            region.dirty = 0.0
        freed = self.regions.get("(freed)")
        if freed is not None:
            del self.regions["(freed)"]
        return count
