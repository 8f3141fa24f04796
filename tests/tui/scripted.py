"""A console backend that acts out the recorded migrate-ping session, for flow tests.

It stands in for the LabController adapter (not written yet) so that the console's
own flows can be tested now: keys -> workers -> backend calls -> events -> panes,
confirmations, failures, quitting while a scenario runs. Each action publishes the
events the recorded session has for it (tests/tui/session_fixture.py, built from
real tool output), re-timed to now, through a real EventBus into a real session
log. When the simulated lab exists, the same flow tests run against it too
(``flow_backend`` in test_flows.py is parametrized for that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from backend.drivers.base import HostCommand
from backend.events import Event, EventBus, Note
from backend.session import SessionLogWriter, make_header
from tests.tui import session_fixture as fixture
from tui.backend_api import ActionRefused, EventCallback, LabLayout, ScenarioInfo

SCENARIOS = (
    ScenarioInfo("migrate-ping", "ping the guest while it migrates", "test 4 of the 2009 study"),
)
CLEANUP_ARGV = ("pkill", "-INT", "-x", "ping")


class ScriptedBackend:
    """A :class:`~tui.backend_api.ConsoleBackend` whose lab is a recording."""

    def __init__(
        self,
        log_path: Path,
        *,
        readonly: bool = False,
        hold_scenario: bool = False,
        fail: dict[str, Exception] | None = None,
    ) -> None:
        self._log_path = log_path
        self._readonly = readonly
        self._hold = hold_scenario
        self._fail = fail or {}
        self._bus = EventBus()
        self._writer: SessionLogWriter | None = None
        self._timeline = fixture.Timeline()
        self._start = time.time()
        self._guest_on: str | None = None
        self._cancel = asyncio.Event()
        self.calls: list[str] = []
        self.scenario_running = False

    @property
    def layout(self) -> LabLayout:
        return LabLayout.from_config(fixture.lab())

    @property
    def simulated(self) -> bool:
        return True

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def session_log(self) -> Path:
        return self._log_path

    @property
    def session_start(self) -> float:
        return self._start

    def clock(self) -> float:
        return time.time()

    def subscribe(self, callback: EventCallback) -> None:
        self._bus.subscribe(callback)

    async def start(self) -> None:
        header = make_header(lab=fixture.lab().model_dump(mode="json"), simulated=True)
        self._writer = await SessionLogWriter.create(self._log_path, header, self._bus)
        await self._play(fixture.connect())

    async def close(self) -> None:
        self.calls.append("close")
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def _play(self, events: Sequence[Event]) -> None:
        """Publish ``events`` now, keeping their spacing compressed 1000 times."""
        if not events:
            return
        first = events[0].t
        now = time.time()
        for n, event in enumerate(events):
            self._bus.publish(event.model_copy(update={"t": now + (event.t - first) / 1000}))
            if n % 50 == 49:
                await asyncio.sleep(0.001)

    def _check(self, action: str) -> None:
        self.calls.append(action)
        if self._readonly:
            raise ActionRefused("read-only")
        error = self._fail.get(action)
        if error is not None:
            raise error

    def scenarios(self) -> Sequence[ScenarioInfo]:
        return SCENARIOS

    async def prepare(self) -> None:
        self._check("prepare")
        await self._play(fixture.prepare(self._timeline))

    async def boot(self, host: str) -> None:
        self._check(f"boot {host}")
        await self._play(fixture.boot(self._timeline, host))
        self._guest_on = host

    async def migrate(self, dest: str) -> None:
        self._check(f"migrate {dest}")
        source = self._guest_on
        assert source is not None and source != dest
        events = [
            e
            for e in fixture.migrate_ping(self._timeline, source, dest)
            if e.kind.startswith(("migration.", "command.", "domain."))
        ]
        await self._play(events)
        self._guest_on = dest

    async def run_scenario(self, scenario_id: str) -> None:
        self._check(f"run {scenario_id}")
        if scenario_id != "migrate-ping":
            raise ValueError(f"no scenario {scenario_id!r}")
        source = self._guest_on
        assert source is not None
        dest = "qemu2" if source == "qemu1" else "qemu1"
        events = fixture.migrate_ping(self._timeline, source, dest)
        half = next(i for i, e in enumerate(events) if e.kind == "migration.progress")
        self.scenario_running = True
        try:
            await self._play(events[:half])
            if self._hold:
                await self._cancel.wait()
            if self._cancel.is_set():
                # The runner's cleanup: stop the probes, leave the guest where it is.
                await self._play(self._timeline.command(time.time(), "storage", list(CLEANUP_ARGV)))
                self._bus.publish(
                    Note(text="migrate-ping cancelled; probes stopped", level="warning")
                )
                return
            await self._play(events[half:])
            self._guest_on = dest
        finally:
            self.scenario_running = False

    async def cancel(self) -> None:
        self.calls.append("cancel")
        self._cancel.set()

    async def plan_cancel(self) -> list[HostCommand]:
        return [HostCommand("storage", CLEANUP_ARGV)]

    async def plan_shutdown(self, host: str) -> list[HostCommand]:
        return [HostCommand(host, ("qmp", "system_powerdown"))]

    async def shutdown_guest(self, host: str) -> None:
        self._check(f"shutdown {host}")

    async def plan_destroy(self, host: str) -> list[HostCommand]:
        return [HostCommand(host, ("qmp", "quit"))]

    async def destroy_guest(self, host: str) -> None:
        self._check(f"destroy {host}")

    async def plan_logout(self, host: str) -> list[HostCommand]:
        argv = ("iscsiadm", "-m", "node", "-T", fixture.IQN, "-p", fixture.PORTAL, "--logout")
        return [HostCommand(host, argv)]

    async def logout(self, host: str) -> None:
        self._check(f"logout {host}")

    async def plan_unexport(self) -> list[HostCommand]:
        tgt = ("tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1")
        return [HostCommand("storage", tgt)]

    async def unexport(self) -> None:
        self._check("unexport")
