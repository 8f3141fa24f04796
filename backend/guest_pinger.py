"""The session's own ping of the guest: from the storage node, while the guest runs.

The 2009 study watched every migration with a ping from the storage node. A lab
session does the same by itself, so every migration is measured by the network, made
by a key or in a scenario, in the console or in ``miglab run``: the guest pane's RTT,
the RTT trace with its losses, and each migration's network-measured unreachable time
(the session's MigrationMeter and a run's analysis read these samples).

It pings while a hypervisor host runs the guest (the ``domain.state`` events say where)
and through a migration, whatever the copies' states say meanwhile, and through a
scenario's run, unless that scenario pings the guest from the storage node itself (two
pings from one host would be one trace: the scenario's, at its own interval, measures
then). Not once the guest is gone. Its samples are named after the storage host, as a
scenario's ping from there is.

A guest that has just begun to run (booting) is first asked with one echo request at a
time until it answers, as a run waits for its guest; only then does the recorded ping
start. So the probes a boot leaves unanswered are not counted lost, in the guest pane
or in a report; once it has answered, every silence counts, across a migration too.
Those asking pings are routine looks (``poll``): the session log keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from backend.config import LabConfig
from backend.drivers.base import ABSENT, ALIVE, Publish
from backend.events import (
    DomainState,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    HostState,
    MigrationFinished,
    MigrationProgress,
    Note,
)
from backend.probes.ping import PING, PingOptions, sample_kind
from backend.transport.base import CommandResult, HostRunner, polling
from backend.transport.hosts import Hosts

__all__ = ["GuestPinger"]

ASK_AGAIN_S = 1.0
"""Between two asking pings of a guest that has not answered yet (each waits 1 s for
its reply)."""

_NO_REPLY = 1
"""ping's exit status when no reply came (2 and others: it could not ping)."""


class GuestPinger:
    """Subscribe :meth:`seen` to the session's bus; :meth:`close` at the end."""

    def __init__(
        self,
        lab: LabConfig,
        hosts: Hosts,
        publish: Publish,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._lab = lab
        self._hosts = hosts
        self._publish = publish
        self._clock = clock
        self._sleep = sleep  # a simulated lab's waits on its own clock
        self.interval_s: float | None = lab.console.ping_interval_s if lab.console.ping else None
        self._states: dict[str, str] = {}  # hypervisor host -> the guest's state there
        self._migrating = False
        self._next_run = (False, False)  # see next_run
        self._yielding = False  # a run that pings from the storage node is on
        self._ending = False  # the run that ends the session is on
        self._closed = False
        self._task: asyncio.Task[CommandResult] | None = None
        self._failed = False  # the last ping ended by itself: not again until things change
        self._answered = False  # the guest answered since it began to run

    @property
    def pinging(self) -> bool:
        return self._task is not None and not self._task.done()

    def seen(self, event: Event) -> None:
        if isinstance(event, DomainState) and event.domain == self._lab.guest.name:
            self._states[event.host] = event.state
            self._failed = False
        elif isinstance(event, MigrationProgress):
            self._migrating = True
        elif isinstance(event, MigrationFinished):
            self._migrating = False
            if event.ok and event.domain == self._lab.guest.name:
                # Where it runs now, before any look says so: no gap in the pinging.
                self._states[event.source] = ABSENT
                self._states[event.dest] = "running"
        elif isinstance(event, ExperimentStarted):
            (self._yielding, self._ending), self._next_run = self._next_run, (False, False)
        elif isinstance(event, ExperimentFinished):
            self._yielding = False
            self._failed = False
            self._closed = self._closed or self._ending
        elif (
            isinstance(event, HostState)
            and event.host == self._lab.storage.host
            and event.state == "connected"
        ):
            self._failed = False  # the storage node is back: ping from it again
        else:
            return
        if not self._runs():
            self._answered = False  # gone: when it runs again, it boots
        self._update()

    def next_run(self, *, pings: bool, ends_session: bool) -> None:
        """Say what the next scenario run (its ``experiment.started``) is: ``pings``, it
        pings the guest from the storage node itself (this ping pauses until it finishes);
        ``ends_session``, the session ends with it (``miglab run``: no ping after it)."""
        self._next_run = (pings, ends_session)

    def set_interval(self, interval_s: float | None) -> None:
        """Ping every ``interval_s`` from now on (None: stop pinging)."""
        if interval_s is not None:
            PingOptions(interval_s=interval_s)  # the same bounds as a scenario's ping
        self.interval_s = interval_s
        self._failed = False
        self._stop()
        self._update()

    def command(self) -> list[str] | None:
        """The ping this session sends from the storage node while the guest runs (None:
        it does not ping)."""
        if self.interval_s is None:
            return None
        return PingOptions(interval_s=self.interval_s).argv(self._lab.guest.address)

    def _runs(self) -> bool:
        return any(state in ALIVE for state in self._states.values()) or self._migrating

    def _wanted(self) -> bool:
        return (
            self._runs()
            and self.interval_s is not None
            and not self._yielding
            and not self._closed
            and not self._failed
        )

    def _update(self) -> None:
        wanted = self._wanted()
        if wanted and not self.pinging:
            self._start()
        elif not wanted and self.pinging:
            self._stop()

    def _start(self) -> None:
        assert self.interval_s is not None
        storage = self._lab.storage.host
        runner = self._hosts.get(storage)
        if runner is None:
            return  # not connected yet: its host.state "connected" tries again
        argv = self.command()
        assert argv is not None
        parser = PING.new_parser(storage, self._clock)

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                for sample in parser.feed(line):
                    if sample_kind(sample) == "reply":
                        self._answered = True
                    self._publish(sample)

        task = asyncio.ensure_future(self._ping(runner, argv, on_line))
        self._task = task

        def ended(_: object) -> None:
            for sample in parser.finish():
                self._publish(sample)
            if task.cancelled() or self._task is not task:
                return  # stopped on purpose
            self._task = None
            self._failed = True
            error = task.exception()
            if error is not None:
                why = f"{type(error).__name__}: {error}"
            else:
                result = task.result()
                why = result.failure or f"exit status {result.exit_status}"
                if result.stderr.strip():
                    why += f": {result.stderr.strip()[-300:]}"
            text = f"the session's ping of the guest from {storage} ended: {why}"
            self._publish(Note(text=text, level="warning"))

        task.add_done_callback(ended)

    async def _ping(
        self, runner: HostRunner, argv: list[str], on_line: Callable[[str, str], None]
    ) -> CommandResult:
        """Once the guest answers (at once if it has since it began to run), the ping."""
        if not self._answered:
            asking = PING.answer_argv(self._lab.guest.address)
            assert asking is not None
            while True:
                with polling():
                    answer = await runner.run(asking, timeout=10)
                if answer.ok:
                    self._answered = True
                    break
                if answer.failure is not None or answer.exit_status != _NO_REPLY:
                    return answer  # it cannot ping: said as a ping that ended
                await self._sleep(ASK_AGAIN_S)
        return await runner.run(argv, timeout=None, on_line=on_line, long_running=True)

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Stop pinging, and wait until the ping process is gone."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
