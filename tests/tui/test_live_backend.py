"""The live console backend (tui/live_backend.py) on the simulated study lab, without the UI.

The simulated lab runs in the test's event loop: SSH servers on loopback answering xl,
ietadm, iscsiadm and ping in their real formats. The backend reaches them as it reaches
a real lab (Hosts, drivers, LabController, the runner), so what is asserted here is
what the console gets: the events it draws, the session log, the exact commands of its
confirmation dialogs, refusals and errors. Also `miglab demo`'s parts (arguments, the
app on the simulated lab, what quitting leaves behind).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from backend import host_poller
from backend.drivers.base import HostCommand, Refused
from backend.events import (
    CommandFinished,
    CommandStarted,
    DomainState,
    Event,
    ExperimentStarted,
    HostResources,
    HostState,
    InitiatorSession,
    MigrationFinished,
    MigrationMeasured,
    Note,
    Sample,
    StorageExported,
    now,
)
from backend.session import read_session
from backend.sim import lab as sim_lab
from backend.sim.lab import SimulatedLab
from backend.transport.base import CommandFailed
from tests.support.waiting import until
from tests.tui.conftest import quit_console, started
from tests.tui.sim_backend import bound_textual_idle_wait, held_scenarios
from tui.backend_api import ActionRefused, ConsoleBackend
from tui.commands import demo
from tui.commands.common import BadInput
from tui.live_backend import LiveBackend, make_backend
from tui.widgets.status import StatusBar

pytestmark = pytest.mark.timeout(60)

SPEED = 200.0
STORAGE, FIRST, SECOND = "iSCSIserver", "xenserver1", "xenserver2"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLab]:
    async with SimulatedLab.start(speed=SPEED, seed=0) as lab:
        yield lab


class Opened:
    """A started backend and every event it published."""

    def __init__(self, backend: ConsoleBackend) -> None:
        self.backend = backend
        self.events: list[Event] = []
        backend.subscribe(self.events.append)

    @property
    def live(self) -> LiveBackend:
        assert isinstance(self.backend, LiveBackend)
        return self.backend

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    def since(self, mark: int, cls: type[Event]) -> list[Any]:
        return [e for e in self.events[mark:] if isinstance(e, cls)]

    def commands(self, since: int = 0) -> list[HostCommand]:
        return [HostCommand(e.host, tuple(e.argv)) for e in self.since(since, CommandStarted)]

    async def until(self, what: Callable[[], bool]) -> None:
        """Wait for the state, however long this machine takes (no deadline: a hang is
        the test's pytest timeout)."""
        await until(what)


@pytest.fixture
async def opened(sim: SimulatedLab, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    backends: list[ConsoleBackend] = []

    async def open_backend(**options: Any) -> Opened:
        options.setdefault("readonly", False)
        options.setdefault("log_path", tmp_path / f"session-{len(backends)}.jsonl")
        lab = options.pop("lab", sim.lab_config)
        backend = make_backend(lab, sim=sim, quick=True, **options)
        backends.append(backend)
        seen = Opened(backend)
        await backend.start()
        return seen

    yield open_backend
    for backend in backends:
        await backend.close()


async def test_start_connects_writes_the_header_and_publishes_the_lab_as_it_is(
    opened: Callable[..., Any], sim: SimulatedLab
) -> None:
    lab = await opened()
    backend = lab.live
    assert backend.simulated and not backend.readonly
    assert sim.runtime.epoch <= backend.session_start <= sim.clock()  # the simulated clock
    assert abs(now() - sim.clock()) < 1  # events are stamped with it while it is open
    connected = {e.host for e in lab.of(HostState) if e.state == "connected"}
    assert connected == {STORAGE, FIRST, SECOND}
    # The first look: free memory of both hosts, no sessions, nothing exported, no guest.
    await lab.until(lambda: len(lab.of(InitiatorSession)) == 2)
    resources = {e.host: e for e in lab.of(HostResources)}
    assert set(resources) == {FIRST, SECOND}
    assert all(r.free_memory_mb and r.total_memory_mb for r in resources.values())
    assert {(e.host, e.state) for e in lab.of(InitiatorSession)} == {
        (FIRST, "logged-out"),
        (SECOND, "logged-out"),
    }
    assert [e.kind for e in lab.events if e.kind.startswith("storage.")] == ["storage.unexported"]
    await backend.close()
    assert backend.session_log is not None
    session = read_session(backend.session_log)
    header = session.header
    assert header["simulated"] is True
    assert header["lab"]["storage"]["host"] == STORAGE
    assert header["simulation"]["seed"] == 0 and header["simulation"]["speed"] == SPEED
    assert set(header["hosts"]) == {STORAGE, FIRST, SECOND}
    assert header["hosts"][FIRST]["kernel"].startswith("Linux 3.16")  # what the host said
    assert header["hosts"][FIRST]["tools"]["xl"]
    # What was published before the log existed is in it too, in order.
    assert [e.kind for e in session.events][:2] == ["host.state", "host.state"]
    assert session.end is not None and session.end["status"] == "ok"
    assert abs(now() - time.time()) < 1  # closed: back to the wall clock


async def test_the_poller_sees_what_changed_behind_the_consoles_back(
    opened: Callable[..., Any], sim: SimulatedLab
) -> None:
    lab = await opened(poll_s=0.1)
    await lab.until(lambda: len(lab.of(InitiatorSession)) == 2)
    mark = len(lab.events)
    # Somebody exports the disk, logs both hosts in and boots the guest by hand.
    assert await sim_lab.prepare(sim) == []
    await lab.until(lambda: bool(lab.since(mark, DomainState)))
    await lab.until(lambda: len(lab.since(mark, InitiatorSession)) == 2)
    await lab.until(lambda: bool(lab.since(mark, StorageExported)))
    running = lab.since(mark, DomainState)[0]
    assert (running.host, running.domain, running.state) in {
        (FIRST, "guest", "running"),
        (FIRST, "guest", "blocked"),
    }
    assert {e.state for e in lab.since(mark, InitiatorSession)} == {"logged-in"}
    exported = lab.since(mark, StorageExported)[0]
    assert (exported.iqn, exported.lun, exported.backing) == (
        sim.lab_config.storage.iqn,
        sim.lab_config.storage.lun,
        sim.lab_config.storage.device,
    )
    # Later looks publish only what changes: nothing, here.
    await lab.until(lambda: len(lab.since(mark, HostResources)) >= 1)
    settled = len(lab.events)
    await asyncio.sleep(0.5)
    # (The guest runs now: the console's own ping of it reports its samples.)
    later = [e.kind for e in lab.events[settled:] if e.kind != "sample"]
    assert [kind for kind in later if not kind.startswith("command.")] == []


async def test_the_pollers_looks_are_marked_polls_and_an_actions_commands_are_not(
    opened: Callable[..., Any],
) -> None:
    lab = await opened(poll_s=0.1)
    await lab.until(lambda: len(lab.of(InitiatorSession)) == 2)  # a look has been made
    polls = [tuple(e.argv) for e in lab.of(CommandStarted) if e.poll]
    assert ("xl", "list") in polls and ("xl", "info") in polls
    assert any(argv[:3] == ("iscsiadm", "-m", "session") for argv in polls)
    mark = len(lab.events)
    planned = (await lab.live.controller().prepare(dry_run=True)).commands
    await lab.live.prepare()
    ran = [(HostCommand(e.host, tuple(e.argv)), e.poll) for e in lab.since(mark, CommandStarted)]
    changing = [(command, poll) for command, poll in ran if command in planned]
    assert changing and not any(poll for _, poll in changing)


async def test_the_console_pings_the_running_guest_and_measures_each_migration(
    opened: Callable[..., Any],
) -> None:
    lab = await opened()
    backend = lab.live
    await backend.prepare()
    assert not lab.of(Sample)  # no guest runs: nothing to ping
    await backend.boot(FIRST)
    await lab.until(lambda: any(s.probe == "ping" and "rtt_ms" in s.values for s in lab.of(Sample)))
    pings = [e for e in lab.of(CommandStarted) if e.argv[0] == "ping" and not e.poll]
    assert [(e.host, e.argv[-1]) for e in pings] == [(STORAGE, backend.lab.guest.address)]
    # The booting guest was asked one echo at a time (routine looks) until it answered;
    # only then did the recorded ping start: its boot is not counted lost.
    asked = [e for e in lab.of(CommandStarted) if e.argv[0] == "ping" and e.poll]
    assert asked and all(("-c", "1") in itertools.pairwise(e.argv) for e in asked)
    first = next(s for s in lab.of(Sample) if s.probe == "ping")
    assert "rtt_ms" in first.values, first
    assert "0.1" in pings[0].argv  # [console] ping_interval_s's default
    await backend.migrate(SECOND)
    await lab.until(lambda: bool(lab.of(MigrationMeasured)))
    [measured] = lab.of(MigrationMeasured)
    assert (measured.source, measured.dest, measured.ok) == (FIRST, SECOND, True)
    assert measured.unreachable_s is not None and measured.lost_probes is not None
    assert measured.limit_s is not None and measured.total_s is not None
    assert (
        len([e for e in lab.of(CommandStarted) if e.argv[0] == "ping" and not e.poll]) == 1
    )  # one ping
    await backend.close()
    assert backend.session_log is not None
    logged = read_session(backend.session_log).of_kind("migration.measured")
    assert [e.unreachable_s for e in logged] == [measured.unreachable_s]  # type: ignore[attr-defined]


async def test_actions_publish_what_the_panes_draw_and_plans_are_the_exact_commands(
    opened: Callable[..., Any],
) -> None:
    lab = await opened()
    backend = lab.live
    await backend.prepare()
    assert lab.of(StorageExported)[-1].changed
    await backend.boot(FIRST)
    assert lab.of(DomainState)[-1].host == FIRST
    planned = await backend.plan_shutdown(FIRST)
    assert planned == [HostCommand(FIRST, ("xl", "shutdown", "-w", "guest"))]
    mark = len(lab.events)
    await backend.migrate(SECOND)
    finished = lab.of(MigrationFinished)[-1]
    assert (finished.source, finished.dest, finished.ok) == (FIRST, SECOND, True)
    assert HostCommand(FIRST, ("xl", "-vvv", "migrate", "guest", "127.0.0.1")) in lab.commands(mark)
    # A dialog's commands are exactly those the action then runs (dry run = real run).
    planned = await backend.plan_shutdown(SECOND)
    mark = len(lab.events)
    await backend.shutdown_guest(SECOND)
    assert [c for c in lab.commands(mark) if c in planned] == planned
    assert [c for c in lab.commands(mark) if c.argv[:2] == ("xl", "shutdown")] == planned
    planned = await backend.plan_unexport()
    assert planned[0].host == STORAGE and planned[-2].argv == (
        "ietadm",
        "--op",
        "delete",
        "--tid=1",
    )
    assert len([c for c in planned if "--sid" in " ".join(c.argv)]) == 2  # both sessions cut
    mark = len(lab.events)
    await backend.unexport()
    assert [c for c in lab.commands(mark) if c.argv[0] == "ietadm"] == [
        c for c in planned if c.argv[0] == "ietadm"
    ]
    assert [e.kind for e in lab.since(mark, Event) if e.kind == "storage.unexported"]


async def test_the_shared_disk_is_not_pulled_from_under_a_running_guest(
    opened: Callable[..., Any],
) -> None:
    lab = await opened()
    backend = lab.live
    await backend.prepare()
    await backend.boot(FIRST)
    with pytest.raises(Refused, match=f"the guest runs on {FIRST}"):
        await backend.plan_logout(FIRST)
    with pytest.raises(Refused, match=f"the guest runs on {FIRST}"):
        await backend.logout(FIRST)
    with pytest.raises(Refused, match="shut the guest down"):
        await backend.plan_unexport()
    # The other host has no guest: it may log out (the dialog shows the command).
    assert await backend.plan_logout(SECOND) == [
        HostCommand(
            SECOND,
            (
                "iscsiadm",
                "-m",
                "node",
                "-T",
                backend.lab.storage.iqn,
                "-p",
                str(backend.lab.storage.portal),
                "--logout",
            ),
        )
    ]
    # Booting a second copy on the other host is refused by the LabController.
    with pytest.raises(Refused, match="already running"):
        await backend.boot(SECOND)


async def test_a_failed_command_names_host_command_and_stderr(
    opened: Callable[..., Any], sim: SimulatedLab
) -> None:
    guest = sim.lab_config.guest.model_copy(update={"config": "/etc/xen/missing.cfg"})
    lab = await opened(lab=sim.lab_config.model_copy(update={"guest": guest}))
    await lab.live.prepare()
    with pytest.raises(CommandFailed) as failed:
        await lab.live.boot(FIRST)
    message = str(failed.value)
    assert message.startswith(f"{FIRST}: `xl create /etc/xen/missing.cfg` failed (exit status")
    stderr = failed.value.result.stderr.strip()
    assert stderr and stderr.splitlines()[-1] in message  # xl's own words


async def test_readonly_refuses_every_host_changing_action_but_still_watches(
    opened: Callable[..., Any],
) -> None:
    lab = await opened(readonly=True)
    backend = lab.backend
    assert backend.readonly and list(backend.scenarios()) == []
    refused = [
        backend.prepare(),
        backend.boot(FIRST),
        backend.migrate(SECOND),
        backend.run_scenario("migrate-ping"),
        backend.cancel(),
        backend.plan_cancel(),
        backend.plan_shutdown(FIRST),
        backend.shutdown_guest(FIRST),
        backend.plan_destroy(FIRST),
        backend.destroy_guest(FIRST),
        backend.plan_logout(FIRST),
        backend.logout(FIRST),
        backend.plan_unexport(),
        backend.unexport(),
    ]
    for call in refused:
        with pytest.raises(ActionRefused, match="--readonly"):
            await call
    await lab.until(lambda: len(lab.of(InitiatorSession)) == 2)  # it still looks
    mutating = {"create", "shutdown", "destroy", "migrate", "--login", "--logout", "new"}
    assert not [c for c in lab.commands() if mutating & set(c.argv)]


async def test_cancel_stops_a_migration_and_the_guest_stays_on_the_source(
    tmp_path: Path,
) -> None:
    async with SimulatedLab.start(speed=20.0, seed=0) as sim:
        # The migration is held at 0.1 Mbit/s (a day of simulated copying), so the cancel
        # comes before the suspend however slow this machine is (at 100 Mbit/s it had
        # 4.5 s of wall time to get there).
        sim.model.params = dataclasses.replace(sim.model.params, migrate_mbit=0.1)
        backend = make_backend(
            sim.lab_config, readonly=False, sim=sim, log_path=tmp_path / "s.jsonl"
        )
        lab = Opened(backend)
        await backend.start()
        try:
            await backend.prepare()
            await backend.boot(FIRST)
            migrating = asyncio.ensure_future(backend.migrate(SECOND))
            await lab.until(lambda: any(e.kind == "migration.progress" for e in lab.events))
            planned = await backend.plan_cancel()
            assert HostCommand(FIRST, ("stop", "xl", "-vvv", "migrate", "guest", "127.0.0.1")) in (
                planned
            )
            await backend.cancel()
            with pytest.raises(asyncio.CancelledError):
                await migrating
            finished = lab.of(MigrationFinished)[-1]
            assert not finished.ok and finished.guest_host == FIRST
            notes = [e.text for e in lab.of(Note)]
            assert f"migrate to {SECOND} cancelled" in notes
            assert await backend.plan_cancel() == []  # nothing runs any more
        finally:
            await backend.close()


async def test_close_stops_a_running_scenario_and_saves_the_log(
    opened: Callable[..., Any],
) -> None:
    lab = await opened(scenarios=held_scenarios())
    backend = lab.live
    assert [s.id for s in backend.scenarios()] == ["migrate-ping"]
    running_scenario = asyncio.ensure_future(backend.run_scenario("migrate-ping"))
    # the scenario's ping probe is on (a one-shot reachability ping would say -c 1)
    await lab.until(
        lambda: any(
            c.argv[0] == "ping" and ("-c", "1") not in itertools.pairwise(c.argv)
            for c in lab.commands()
        )
    )
    await backend.close()
    with pytest.raises(asyncio.CancelledError):
        await running_scenario
    assert backend.session_log is not None
    session = read_session(backend.session_log)
    assert session.end is not None and session.end["status"] == "interrupted"
    ended = session.of_kind("experiment.finished")
    assert [e.status for e in ended] == ["interrupted"]  # type: ignore[attr-defined]
    closed = {e.host for e in session.of_kind("host.state") if e.state == "closed"}  # type: ignore[attr-defined]
    assert closed == {STORAGE, FIRST, SECOND}
    with pytest.raises(Exception, match="closing"):
        await backend.prepare()


async def test_a_host_down_at_start_is_shown_failed_and_connects_later(
    sim: SimulatedLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_poller, "RETRY_FIRST_S", 0.1)
    server = sim.servers[STORAGE]
    await server.close()
    backend = make_backend(
        sim.lab_config, readonly=False, sim=sim, log_path=tmp_path / "s.jsonl", poll_s=0.1
    )
    lab = Opened(backend)
    try:
        await backend.start()
        # The first try failed; retries (every 0.1 s here) may have begun already on a
        # slow machine, and fail too while the server is down.
        states = [e.state for e in lab.of(HostState) if e.host == STORAGE]
        assert states[:2] == ["connecting", "failed"]
        assert set(states) == {"connecting", "failed"}
        with pytest.raises(Exception, match=f"{STORAGE}: not connected"):
            await backend.prepare()
        await server.start()  # the storage node is back, on the same port
        await lab.until(
            lambda: any(e.host == STORAGE and e.state == "connected" for e in lab.of(HostState))
        )
        await lab.until(lambda: any(e.kind == "storage.unexported" for e in lab.events))
        await backend.prepare()
        assert lab.of(StorageExported)
    finally:
        await backend.close()
    header = read_session(tmp_path / "s.jsonl").header
    assert header["hosts"][STORAGE]["reachable"] is False


async def test_the_session_log_is_named_by_the_time_and_never_overwritten(
    sim: SimulatedLab, tmp_path: Path
) -> None:
    first = make_backend(sim.lab_config, readonly=False, sim=sim, log_dir=tmp_path)
    second = make_backend(sim.lab_config, readonly=False, sim=sim, log_dir=tmp_path)
    assert first.session_log is not None and first.session_log.parent == tmp_path
    assert first.session_log.name.startswith("console-") and first.session_log.suffix == ".jsonl"
    try:
        await first.start()
        await second.start()
    finally:
        await first.close()
        await second.close()
    logs = sorted(tmp_path.glob("console-*.jsonl"))
    assert len(logs) == 2 and second.session_log in logs and first.session_log in logs
    if first.session_log.name[:23] == second.session_log.name[:23]:  # the same second
        assert second.session_log.stem.endswith("-2")


# -- miglab demo -----------------------------------------------------------------------------


def parse_demo(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="miglab")
    demo.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["demo", *argv])


def test_demo_options_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_demo("--speed", "50", "--seed", "7", "--quick", "--log-dir", str(tmp_path))
    assert (args.speed, args.seed, args.quick, args.log_dir) == (50.0, 7, True, tmp_path)
    assert parse_demo().speed == demo.DEFAULT_SPEED
    for bad in ("0", "-1", "nope", "5000"):
        with pytest.raises(SystemExit) as exit_:
            parse_demo("--speed", bad)
        assert exit_.value.code == 2
    assert "speed" in capsys.readouterr().err
    with pytest.raises(BadInput, match="no such file"):
        demo.run(parse_demo("--lab", str(tmp_path / "missing.toml")))
    with pytest.raises(BadInput, match="no theme 'plaid'"):
        demo.run(parse_demo("--theme", "plaid"))


async def test_demo_opens_the_console_on_the_simulated_lab_and_quits_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound_textual_idle_wait(monkeypatch)
    async with demo.open_demo(speed=SPEED, quick=True, log_dir=tmp_path) as app:
        backend = app.backend
        assert backend.simulated and not backend.readonly
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await started(app)
            assert app.title == demo.TITLE and "SIMULATED" in app.title
            assert "SIMULATED" in str(app.screen.query_one(StatusBar).render())
            assert [s.id for s in backend.scenarios()][:1] == ["disk-iscsi-vs-local"]
            await quit_console(app, pilot)
        log = backend.session_log
        assert log is not None and log.parent == tmp_path
    session = read_session(log)
    assert session.header["simulated"] is True and session.end is not None
    assert {e.host for e in session.of_kind("host.state") if e.state == "connected"} == {  # type: ignore[attr-defined]
        STORAGE,
        FIRST,
        SECOND,
    }


async def test_the_ping_interval_changes_at_once_and_off_stops_pinging(
    opened: Callable[..., Any],
) -> None:
    lab = await opened()
    backend = lab.live
    await backend.prepare()
    await backend.boot(FIRST)
    await lab.until(lambda: any(e.argv[0] == "ping" and not e.poll for e in lab.of(CommandStarted)))
    backend.set_ping_interval(0.5)
    await lab.until(
        lambda: len([e for e in lab.of(CommandStarted) if e.argv[0] == "ping" and not e.poll]) == 2
    )
    first, second = [e for e in lab.of(CommandStarted) if e.argv[0] == "ping" and not e.poll]
    assert "0.1" in first.argv and "0.5" in second.argv
    await lab.until(
        lambda: any(e.cmd_id == first.cmd_id for e in lab.of(CommandFinished))
    )  # the old one was stopped
    backend.set_ping_interval(None)
    await lab.until(lambda: any(e.cmd_id == second.cmd_id for e in lab.of(CommandFinished)))
    assert backend.ping_interval_s is None
    with pytest.raises(ValueError):
        backend.set_ping_interval(0.0001)  # below what ping takes


async def test_a_scenario_without_a_ping_of_its_own_is_measured_by_the_consoles(
    opened: Callable[..., Any],
) -> None:
    lab = await opened()
    backend = lab.live
    await backend.run_scenario("migrate-sysbench-cpu")
    await lab.until(lambda: bool(lab.of(MigrationMeasured)))
    [measured] = lab.of(MigrationMeasured)
    assert measured.ok and measured.unreachable_s is not None and measured.unreachable_s < 1.0
    pings = [e for e in lab.of(CommandStarted) if e.argv[0] == "ping" and not e.poll]
    assert [(e.host, "0.1" in e.argv) for e in pings] == [(STORAGE, True)]  # the console's
    replies = [s for s in lab.of(Sample) if s.probe == "ping" and "rtt_ms" in s.values]
    started = next(e.t for e in lab.events if isinstance(e, ExperimentStarted))
    assert any(s.t is not None and s.t > started for s in replies)  # through the run
