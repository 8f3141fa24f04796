"""The lab's actions on the main screen: keys that change hosts, run in workers.

Every action goes through the backend, in a Textual worker, so the UI never waits
on a host. A failure becomes a notification with the backend's own message (it
names host, command and stderr; the command log has the full output). Destructive
actions first ask the backend for the exact commands (its dry-run plan) and show
them in a :class:`~tui.screens.confirm.ConfirmScreen`; nothing runs without a yes.
A read-only console or a replay refuses these keys with a notification.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from textual import work
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from backend.aio import wait_for
from tui import keys
from tui.backend_api import ActionRefused, ConsoleBackend, RecordsEndStatus, ReplayControls
from tui.screens.confirm import ConfirmScreen
from tui.screens.pickers import Choice, scenario_choice
from tui.widgets.lab_state import LabState
from tui.widgets.safe_text import clean

if TYPE_CHECKING:
    from backend.drivers.base import HostCommand

ACTION_GROUP = "action"
CANCEL_WAIT_S = 60.0
"""On quit, how long a cancelled action may take to clean up before its task is cancelled."""


class ActionScreen(Screen[None]):
    """A screen bound to one backend, with the lab's actions."""

    def __init__(self, backend: ConsoleBackend) -> None:
        super().__init__()
        self.backend = backend
        self.state = LabState(backend.layout, backend.session_start)
        self.running: str | None = None
        """What runs now (a worker of ours), or None."""
        self._backend_closed = False

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast whose text is shown as text: errors and notes quote hosts and files."""
        super().notify(
            clean(message, lines=True),
            title=clean(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    @property
    def is_replay(self) -> bool:
        return isinstance(self.backend, ReplayControls)

    def _refused(self, key: keys.Key) -> bool:
        """True (after telling the user) if ``key`` may not run now."""
        if key.changes_host and self.backend.readonly:
            why = (
                "this is a replay of a saved session"
                if self.is_replay
                else "the console was started with --readonly"
            )
            self.notify(f"{key.label} is disabled: {why}.", title="read-only", severity="warning")
            return True
        if key.changes_host and not key.confirm and self.running is not None:
            self.notify(
                f"{self.running} is running; wait for it or cancel it (x).",
                title="busy",
                severity="warning",
            )
            return True
        return False

    @property
    def readonly_reason(self) -> str | None:
        if not self.backend.readonly:
            return None
        return "replay" if self.is_replay else "--readonly"

    # -- running backend actions -----------------------------------------------------------------

    def _run(self, label: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run one host-changing action in a worker; its failure becomes a notification."""
        self.running = label

        async def run() -> str:
            await work()
            return label

        self.run_worker(run(), name=label, group=ACTION_GROUP, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != ACTION_GROUP:
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.running = None
        if event.state == WorkerState.SUCCESS:
            self.notify(f"{worker.name} done", timeout=3)
        elif event.state == WorkerState.ERROR:
            # The message names host, command and stderr; the log pane has the full output.
            self.notify(
                str(worker.error), title=f"{worker.name} failed", severity="error", timeout=20
            )
        elif event.state == WorkerState.CANCELLED:
            self.notify(f"{worker.name} stopped", severity="warning")

    def action_prepare(self) -> None:
        if not self._refused(keys.BY_ACTION["prepare"]):
            self._run("prepare", self.backend.prepare)

    def action_boot(self) -> None:
        if self._refused(keys.BY_ACTION["boot"]):
            return
        options = [(host, self._host_option(host)) for host in self.backend.layout.hypervisor_hosts]

        def chosen(host: str | None) -> None:
            if host is not None:
                self._run(f"boot on {host}", lambda: self.backend.boot(host))

        self.app.push_screen(Choice("Boot the guest on", options), chosen)

    def _host_option(self, host: str) -> str:
        view = self.state.hosts[host]
        parts = [host, view.state]
        if view.free_memory_mb is not None:
            parts.append(f"{view.free_memory_mb:.0f} MB free")
        if view.session is not None:
            parts.append(f"iscsi {view.session}")
        if self.state.guest.host == host:
            parts.append("(the guest runs here)")
        return "  ".join(parts)

    def action_migrate(self) -> None:
        if self._refused(keys.BY_ACTION["migrate"]):
            return
        source = self.state.guest.host
        if source is None:
            self.notify(
                "The guest is not running on either host; boot it first (b).",
                title="nothing to migrate",
                severity="warning",
            )
            return
        dest = self.backend.layout.other_host(source)
        self._run(f"migrate to {dest}", lambda: self.backend.migrate(dest))

    def action_run_scenario(self) -> None:
        if self._refused(keys.BY_ACTION["run_scenario"]):
            return
        try:
            scenarios = list(self.backend.scenarios())
        except ActionRefused as refused:  # the lab is still starting
            self.notify(str(refused), severity="warning", timeout=3)
            return
        if not scenarios:
            self.notify("This lab offers no scenarios.", severity="warning")
            return

        def chosen(scenario: str | None) -> None:
            if scenario is not None:
                self._run(scenario, lambda: self.backend.run_scenario(scenario))

        self.app.push_screen(scenario_choice(scenarios), chosen)

    def action_cancel(self) -> None:
        if self._refused(keys.BY_ACTION["cancel"]):
            return
        if self.running is None:
            self.notify("Nothing is running.", severity="information")
            return
        self._confirm_flow(
            f"Cancel {self.running}?",
            f"Stop {self.running}. The guest stays where it runs now.",
            self.backend.plan_cancel,
            self.backend.cancel,
            also_running=True,
        )

    def action_shutdown_guest(self) -> None:
        if not self._refused(keys.BY_ACTION["shutdown_guest"]):
            self._with_guest_host(
                "shut down", self.backend.plan_shutdown, self.backend.shutdown_guest
            )

    def action_destroy_guest(self) -> None:
        if not self._refused(keys.BY_ACTION["destroy_guest"]):
            self._with_guest_host("destroy", self.backend.plan_destroy, self.backend.destroy_guest)

    def _with_guest_host(
        self,
        verb: str,
        plan: Callable[[str], Awaitable[list[HostCommand]]],
        act: Callable[[str], Awaitable[None]],
    ) -> None:
        def go(host: str | None) -> None:
            if host is None:
                return
            guest = self.backend.layout.guest
            self._confirm_flow(
                f"{verb.capitalize()} the guest on {host}?",
                f"{verb.capitalize()} {guest} on {host}. Probes running in it will fail.",
                lambda: plan(host),
                lambda: act(host),
            )

        host = self.state.guest.host
        if host is not None:
            go(host)
        else:
            options = [(h, self._host_option(h)) for h in self.backend.layout.hypervisor_hosts]
            self.app.push_screen(Choice(f"{verb.capitalize()} the guest on", options), go)

    def action_logout(self) -> None:
        if self._refused(keys.BY_ACTION["logout"]):
            return
        options = [(h, self._host_option(h)) for h in self.backend.layout.hypervisor_hosts]

        def go(host: str | None) -> None:
            if host is not None:
                self._confirm_flow(
                    f"Log {host} out of the shared disk?",
                    f"Log {host} out of the iSCSI target. A guest running there loses its disk.",
                    lambda: self.backend.plan_logout(host),
                    lambda: self.backend.logout(host),
                )

        self.app.push_screen(Choice("Log out of the shared disk", options), go)

    def action_unexport(self) -> None:
        if self._refused(keys.BY_ACTION["unexport"]):
            return
        storage = self.backend.layout.storage_host
        self._confirm_flow(
            "Remove the export?",
            f"Remove the disk's export on {storage}. Hosts logged in lose the disk.",
            self.backend.plan_unexport,
            self.backend.unexport,
        )

    @work(group="confirm", exit_on_error=False)
    async def _confirm_flow(
        self,
        title: str,
        question: str,
        plan: Callable[[], Awaitable[list[HostCommand]]],
        act: Callable[[], Awaitable[None]],
        also_running: bool = False,
    ) -> None:
        """Plan, show the exact commands, and act only on an explicit yes."""
        try:
            commands = await plan()
        except Exception as error:
            self.notify(str(error), title="could not plan it", severity="error", timeout=15)
            return
        if not await self.app.push_screen_wait(ConfirmScreen(title, question, commands)):
            return
        if also_running:  # cancel runs beside the action it stops
            try:
                await act()
            except Exception as error:
                self.notify(str(error), title="cancel failed", severity="error", timeout=20)
        else:
            self._run(title.rstrip("?").lower(), act)

    # -- closing -----------------------------------------------------------------------------------

    def running_actions(self) -> list[Worker[object]]:
        return [w for w in self.workers if w.group == ACTION_GROUP and w.is_running]

    async def close_backend(self) -> None:
        """Stop what runs (its cleanup runs), wait for it, then close: the log is saved."""
        if self._backend_closed:
            return
        self._backend_closed = True
        running = self.running_actions()
        if running and isinstance(self.backend, RecordsEndStatus):
            self.backend.set_end_status("interrupted")  # quitting stops what runs
        if running and not self.backend.readonly:
            try:
                await self.backend.cancel()
            except Exception as error:
                self.notify(str(error), title="cancel failed", severity="error")
            for worker in running:
                # Its failure, if any, was already shown; past the wait it is cancelled.
                with contextlib.suppress(Exception):
                    await wait_for(worker.wait(), CANCEL_WAIT_S)
        for worker in running:
            if worker.is_running:
                worker.cancel()
                with contextlib.suppress(Exception):
                    await worker.wait()
        await self.backend.close()
