"""What every probe shares: the parser protocol, the clock, sample construction.

A probe is two things: a command builder (an argv list, never a shell string)
and an incremental line parser. The transport runs the command and hands its
output lines, one at a time, to ``parser.feed(line)``; at end of stream it calls
``parser.finish()``. Both return :class:`~backend.events.Sample` lists.

Parsers never spawn, sleep or read files. Where the tool prints its own time
(``ping -D``) the sample carries it; where it prints time relative to its start
(sysbench's ``[ 3s ]``, dbench's ``execute 3 sec``, the dirtier's uptime) the
parser anchors that relative time once, on the injected ``clock``, so lines that
arrive in a burst (an SSH channel stalled during a migration's downtime) still
get the times they were produced at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from backend.events import Sample

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; ``time.time`` unless a test injects one."""

SUMMARY = "summary"
"""Values key present (1.0) on a probe's end-of-run sample and on no other sample."""


class LineParser(Protocol):
    """An incremental parser of one command's output."""

    def feed(self, line: str) -> list[Sample]:
        """Take one output line (with or without its newline); return new samples."""
        ...

    def finish(self) -> list[Sample]:
        """End of stream: return what only the end can tell (summaries, trailing losses)."""
        ...


ParserFactory = Callable[[str, Clock], LineParser]
"""``factory(host, clock)``: a new parser whose samples name ``host``."""


@dataclass(frozen=True)
class ProbeSpec:
    """One probe kind, as the runner and ``miglab import`` see it."""

    kind: str
    description: str
    factory: ParserFactory
    units: Mapping[str, str] = field(default_factory=dict)

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return self.factory(host, clock)


class SampleMaker:
    """Builds the samples of one parser: fixed probe name, host and units table."""

    __slots__ = ("host", "probe", "units")

    def __init__(self, probe: str, host: str, units: Mapping[str, str]) -> None:
        self.probe = probe
        self.host = host
        self.units = units

    def __call__(self, t: float | None, values: dict[str, float | None]) -> Sample:
        unit = {key: self.units[key] for key in values if key in self.units}
        return Sample(probe=self.probe, host=self.host, t=t, values=values, unit=unit)


def is_summary(sample: Sample) -> bool:
    """Whether ``sample`` is a probe's end-of-run summary rather than a reading."""
    return sample.values.get(SUMMARY) == 1.0


def parse_lines(parser: LineParser, lines: Iterable[str]) -> list[Sample]:
    """Feed every line, then finish: the whole-file form used by ``miglab import``."""
    samples: list[Sample] = []
    for line in lines:
        samples.extend(parser.feed(line))
    samples.extend(parser.finish())
    return samples


def seconds_arg(value: float) -> str:
    """Seconds as a short decimal for an argv (``0.01``, not ``1e-02``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def shell_argv(shell: str | Sequence[str]) -> list[str]:
    """The argv prefix that starts a POSIX shell: ``"sh"`` or e.g. ``("busybox", "sh")``."""
    prefix = [shell] if isinstance(shell, str) else list(shell)
    if not prefix or not all(prefix):
        raise ValueError(f"not a shell: {shell!r}")
    return prefix


def positive_int(name: str, value: int) -> int:
    # bool is an int subclass; True as a thread count is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
