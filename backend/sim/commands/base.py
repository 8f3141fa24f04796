"""What every simulated command gets: its host, its argv, the clock, and where to print.

A command is an ``async def program(inv: Invocation) -> int`` returning the exit code.
It may wait only on the simulated clock (``inv.runtime.until``/``sleep``), so the
same program runs under the wall-clock runtime (over SSH) and the virtual one (tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from backend.sim.clock import Runtime
from backend.sim.model import TICK, Model
from backend.sim.workloads import Workload

if TYPE_CHECKING:
    from backend.sim.world import Node, World

Stream = Literal["stdout", "stderr"]


class Output(Protocol):
    """Where a command's bytes go: an SSH channel, or a list in a test."""

    async def write(self, stream: Stream, text: str) -> None: ...


class GuestGone(Exception):
    """The guest a command ran in was shut down or destroyed: its session is gone."""


@dataclass
class Captured:
    """An :class:`Output` that keeps every line with the simulated time it was printed."""

    runtime: Runtime
    lines: list[tuple[float, Stream, str]] = field(default_factory=list)
    _partial: dict[str, str] = field(default_factory=dict)

    async def write(self, stream: Stream, text: str) -> None:
        data = self._partial.get(stream, "") + text
        *whole, self._partial[stream] = data.split("\n")
        now = self.runtime.now()
        self.lines.extend((now, stream, line) for line in whole)

    def text(self, stream: Stream = "stdout") -> str:
        body = "".join(line + "\n" for _, s, line in self.lines if s == stream)
        return body + self._partial.get(stream, "")


@dataclass
class Invocation:
    """One command running on one simulated host."""

    world: World
    node: Node
    argv: list[str]
    output: Output

    @property
    def model(self) -> Model:
        return self.world.model

    @property
    def runtime(self) -> Runtime:
        return self.world.runtime

    @property
    def name(self) -> str:
        return self.argv[0].rsplit("/", 1)[-1]

    async def out(self, text: str) -> None:
        await self._print("stdout", text)

    async def err(self, text: str) -> None:
        await self._print("stderr", text)

    async def _print(self, stream: Stream, text: str) -> None:
        if self.node.role == "guest":
            await self.guest_running()
        await self.output.write(stream, text)

    async def start(self, workload: type[Workload], **options: object) -> Workload:
        """Start a workload in the guest: a program in a stopped guest waits, as it would."""
        await self.guest_running()
        return self.model.start(workload, **options)

    async def guest_running(self) -> None:
        """Wait while the guest is stopped (a migration's downtime): it cannot print."""
        while not self.model.guest_up:
            if self.model.guest.status in ("off", "shutting-down"):
                raise GuestGone(self.node.name)
            await self.runtime.until(self.model.t + TICK)


Program = Callable[[Invocation], Awaitable[int]]


@dataclass(frozen=True)
class Command:
    """A program and the hosts that have it (``roles``), with its path for ``command -v``."""

    program: Program
    roles: frozenset[str]
    path: str


CommandTable = dict[str, Command]


def option_value(argv: list[str], index: int, flag: str) -> tuple[str, int]:
    """The value of a short option given as ``-X VALUE`` or ``-XVALUE``; next index."""
    arg = argv[index]
    if len(arg) > len(flag):
        return arg[len(flag) :], index + 1
    if index + 1 >= len(argv):
        raise UsageError(f"option requires an argument -- '{flag.lstrip('-')}'")
    return argv[index + 1], index + 2


class UsageError(Exception):
    """A command line the tool itself would reject."""
