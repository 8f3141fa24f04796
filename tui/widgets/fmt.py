"""Short human forms of numbers the panes show (no Textual)."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    """``1.2 s``, ``96 s``, ``5:56``, ``1:02:03``; short and fixed-ish width."""
    if seconds is None or math.isnan(seconds):
        return "?"
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock(seconds: float) -> str:
    """Elapsed time as ``H:MM:SS`` (the status bar's clock)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def offset(seconds: float) -> str:
    """Seconds since the session began, as ``+M:SS.s`` (the command log's time column)."""
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    minutes, secs = divmod(seconds, 60)
    return f"{sign}{int(minutes)}:{secs:04.1f}"


def size(count: float | None) -> str:
    """Bytes as ``512 MiB``, ``1.0 GiB``."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return (
                f"{value:.0f} {unit}"
                if unit in ("B", "KiB") or value >= 100
                else f"{value:.1f} {unit}"
            )
        value /= 1024
    raise AssertionError("unreachable")


def number(value: float | None, unit: str = "") -> str:
    """A measured value with 3 significant digits and its unit."""
    if value is None or math.isnan(value):
        return "?"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}" if unit else text


def ellipsize(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` cells with an ellipsis in the middle (paths keep both ends)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[-tail:]
