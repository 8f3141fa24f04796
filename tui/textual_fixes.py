"""A fix to Textual (8.2) that the console installs before it draws anything.

A drawn line (``Strip``, textual/strip.py) caches what is made from it in itself:
``divide`` its pieces, ``crop_extend`` its cropped copy. When the result is the strip
itself (cut only at its end, cropped to its own length: most lines of most widgets,
in every frame) it caches itself, and refers to itself. Reference counting never frees
such a strip; only the garbage collector's passes do. In the bench (4 traces
streaming, ``t`` pressed every quarter second) 11,000 dead strips with their 77,000
caches and 51,000 segments piled up in 15 s: the collector's full passes came every
few seconds, and one that waited 30 s took 250-420 ms. Not cached, a line is freed as
soon as it is replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.style import Style
from textual.strip import Strip

_textual_divide = Strip.divide
_textual_crop_extend = Strip.crop_extend


def _divide(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    """``Strip.divide``, with the one-piece case not cached (it is the strip itself)."""
    cell_length = self.cell_length
    kept = [cut for cut in cuts if cut <= cell_length]
    if kept == [cell_length]:
        return [self]
    return _textual_divide(self, kept)


def _crop_extend(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    """``Strip.crop_extend``, with a result that is the strip itself not cached."""
    key = (start, end, style)
    cached = self._crop_extend_cache.get(key)
    if cached is not None:
        return cached
    strip = self.extend_cell_length(end, style).crop(start, end)
    if strip is not self:
        self._crop_extend_cache[key] = strip
    return strip


def install() -> None:
    """Put the fix in place (once; again is harmless)."""
    Strip.divide = _divide  # type: ignore[method-assign]
    Strip.crop_extend = _crop_extend  # type: ignore[method-assign]
