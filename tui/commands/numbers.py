"""Numeric command-line options with ranges: argparse ``type=`` functions.

The same ranges as the files: ``--repeat`` stops where a scenario's ``repetitions``
does, ``--link-mbit`` and ``--guest-mb`` where lab.toml's ``link_mbit`` and
``memory_mb`` do. A bad value is an argparse error (usage, message, exit 2); the
value is echoed only when it is short (a 5000-digit number is not).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_SEED = 2**63 - 1
"""Seeds of the simulated lab: 0 to 2^63-1 (they are written to the session log)."""
MAX_EPOCH_S = 253_402_300_799.0
"""The last second of year 9999: the latest time a timestamp can name."""

_SHOWN = 30  # characters of a bad value worth echoing


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN else f"a value of {len(text)} characters"


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A whole number within ``low..high``."""

    def parse(text: str) -> int:
        digits = text.strip().lstrip("+-")
        if not digits.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number, got {_shown(text)}")
        if len(digits) > len(str(max(abs(low), abs(high)))) + 1:
            # Not converted: int() of thousands of digits is slow, then refused anyway.
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}, got {_shown(text)}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}, got {value}")
        return value

    return parse


def float_range(
    low: float, high: float, *, above_low: bool = False, note: str = ""
) -> Callable[[str], float]:
    """A finite number within ``low..high`` (above ``low`` when ``above_low``)."""
    lower = f"above {_fmt(low)}" if above_low else f"at least {_fmt(low)}"
    wanted = f"a number {lower} and at most {_fmt(high)}{note}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {_shown(text)}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {_shown(text)}")
        too_low = value <= low if above_low else value < low
        if too_low or value > high:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {_shown(text)}")
        return value

    return parse


seed = int_range(0, MAX_SEED)
"""``--seed``: 0 to 2^63-1."""
