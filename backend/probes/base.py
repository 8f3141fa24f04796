"""What every probe shares: the probe object, its options model, the parser protocol,
the clock, sample construction.

A probe is one :class:`Probe` object: its scenario options (a pydantic model, checked
when a scenario file loads), its command (an argv list, never a shell string) built
from those options and what only a run knows (:class:`RunContext`), an incremental
line parser, and the metrics its samples give. The transport runs the command and
hands its output lines, one at a time, to ``parser.feed(line)``; at end of stream it
calls ``parser.finish()``. Both return :class:`~backend.events.Sample` lists.

Parsers never spawn, sleep or read files. Where the tool prints its own time
(``ping -D``) the sample carries it; where it prints time relative to its start
(sysbench's ``[ 3s ]``, dbench's ``execute 3 sec``, the dirtier's uptime) the
parser anchors that relative time once, on the injected ``clock``, so lines that
arrive in a burst (an SSH channel stalled during a migration's downtime) still
get the times they were produced at.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

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
"""``factory(host, clock)``: a new parser whose samples name ``host`` (:meth:`Probe.new_parser`)."""

# Ranges of the numbers in probe options: a value outside is a typo or a unit mistake.
# They are in the JSON Schema too.
MAX_THREADS = 1024
"""sysbench threads, dbench clients, make jobs."""

# Stand-ins for what only a run knows, so that loading a scenario can try the builders.
PLACEHOLDER_ADDRESS = "198.18.0.2"
PLACEHOLDER_TIME_S = 60
PLACEHOLDER_MEMORY_MB = 1024


def option_error(message: str) -> PydanticCustomError:
    """A bad option value, as the scenario loader reports it (file, line and key)."""
    return PydanticCustomError("option", message)


class Options(BaseModel):
    """Options of one probe kind, as a scenario entry gives them."""

    # As lab.toml: unknown keys are errors, TOML types are taken as they are, and a
    # loaded scenario is shared, so nobody edits it.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )

    @model_validator(mode="after")
    def _builds(self) -> Options:
        # The command builders own the value checks; run them now, not mid-experiment.
        try:
            self._try_argv()
        except ValueError as exc:
            raise option_error(str(exc)) from None
        return self

    @abc.abstractmethod
    def _try_argv(self) -> list[str]:
        """Build the command once with placeholder inputs, so bad values fail at load."""


@dataclass(frozen=True)
class RunContext:
    """What only a run knows, that a probe's command may need."""

    guest_address: str
    guest_memory_mb: int
    limit_s: int
    """How long a tool may run at most: the stage's planned length and generous slack."""
    warmup_s: float
    """The scenario's warm-up (0: none)."""
    expected_s: float
    """The stage's expected length, each migration taking the guest's memory over the link."""
    scratch: str = "<scratch dir>"
    """The directory made for the probe when it asked for one (:meth:`Probe.scratch_dir`)."""
    tree: str | None = None
    """The first of :meth:`Probe.trees` that the host has (None: none asked, or a plan)."""


@dataclass(frozen=True)
class MetricSpec:
    """One time series a probe gives, and which direction is worse."""

    probe: str
    key: str
    label: str
    unit: str
    higher_is_better: bool


OptionsT = TypeVar("OptionsT", bound=Options)


class Probe(abc.ABC, Generic[OptionsT]):
    """One probe kind: its options, its command, its parser and its metrics.

    The runner asks it for the argv (:meth:`argv`), what to set up first
    (:meth:`scratch_dir`, :meth:`trees`), what to warn about (:meth:`notes`) and a
    parser per run (:meth:`new_parser`); the metrics and the report read
    :attr:`units`, :attr:`metrics` and :meth:`measured`; ``miglab import`` reads with
    :meth:`import_parser`.
    """

    kind: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[type[Options]]
    """The options model a scenario entry of this kind gives."""
    units: ClassVar[Mapping[str, str]]
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    """The time series its samples give, in the report's order."""

    @abc.abstractmethod
    def argv(self, options: OptionsT, run: RunContext) -> list[str]:
        """The command to run, with these options in this run."""

    @abc.abstractmethod
    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        """A new parser whose samples name ``host``."""

    def import_parser(self, host: str, start: float) -> LineParser:
        """A parser of a saved capture whose tool started at ``start``."""
        return self.new_parser(host, lambda: start)

    def scratch_dir(self, options: OptionsT) -> str | None:
        """A name when it needs a fresh scratch directory on its host (removed after)."""
        return None

    def trees(self, options: OptionsT) -> list[str]:
        """Directories it runs in: the first one its host has (none there ends the run)."""
        return []

    def notes(self, options: OptionsT, run: RunContext) -> list[str]:
        """Warnings to give before it starts."""
        return []

    def measured(self, values: Mapping[str, float | None]) -> bool:
        """Whether a reading counts in the metrics (False: the tool's own warm-up)."""
        return True

    def answer_argv(self, address: str) -> list[str] | None:
        """A command that succeeds once the guest at ``address`` answers (None: this
        probe cannot tell): the run waits for it after booting the guest."""
        return None


AnyProbe = Probe[Any]


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
