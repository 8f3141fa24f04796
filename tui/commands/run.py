"""`miglab run SCENARIO`: run one experiment on a lab and write its session log.

Headless for now (the console's run view does not exist yet): one line per phase and
migration as they happen, then the report of the saved log. Exit 0 when the run
completed, 1 when it failed (a migration failed, a host was lost or said no), 2 for
bad input, 130 when interrupted (Ctrl-C: everything the run started is stopped first
and the log is closed with status "interrupted").

``--sim`` runs it on the simulated lab (:mod:`backend.sim`): the study's, or with
``--lab F`` the lab F describes (its link speed, guest memory and vCPUs, host names),
to predict a migration before running it for real. Everything it records is on the
simulated clock, and a run is the same for the same ``--seed`` (the simulated lab
runs on a :class:`~backend.sim.loop.SimEventLoop`); the log's header says
``simulated: true`` and how (speed, seed, epoch, the lab simulated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backend.config import LabConfig
from backend.drivers.base import DriverError
from backend.experiments.headless import HeadlessPrinter
from backend.experiments.report import load_report, render_text
from backend.experiments.runner import CONSOLE, ExperimentRunner, RunAborted, RunResult
from backend.experiments.scenarios import MAX_REPETITIONS, Scenario, find_scenario
from backend.lab_session import LabSession
from backend.session import SessionLogError
from backend.sim import loop as sim_loop
from backend.sim.assumptions import ScenarioInputs
from backend.sim.lab import SimulatedLab
from backend.sim.labs import check_simulatable
from backend.terminal_text import printable
from backend.tomlfile import ConfigError
from backend.transport.base import CommandFailed, TransportError
from tui.commands import SUBCOMMANDS, numbers
from tui.commands.common import DEFAULT_LAB, EXIT_FAILED, EXIT_OK, BadInput, load

EXIT_INTERRUPTED = 130
DEFAULT_SIM_SPEED = 50.0
MAX_SIM_SPEED = 1000.0


# The same range as a scenario file's repetitions.
_repeat = numbers.int_range(1, MAX_REPETITIONS)
_finite_speed = numbers.float_range(0, MAX_SIM_SPEED, above_low=True, note=", or max")


def _speed(text: str) -> float:
    """N up to MAX_SIM_SPEED, or ``max``: the simulated clock bound only by the CPU."""
    return math.inf if text.strip().lower() == "max" else _finite_speed(text)


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help=SUBCOMMANDS["run"],
        description="Run SCENARIO (a built-in id, see `miglab scenarios`, or a scenario "
        "file): prepare the storage if needed, boot the guest if it runs nowhere, start "
        "the probes and workloads, mark the phases, migrate, stop everything it started "
        "(also on Ctrl-C or an error) and write the session log. Runs headless for now "
        "(--headless is the default): a line per phase and migration, then the report. "
        "Exit 1 if a migration failed or a host was lost.",
    )
    run.add_argument("scenario", metavar="SCENARIO", help="a built-in scenario id or a file")
    run.add_argument(
        "--lab",
        default=None,
        help=f"the lab file (default: {DEFAULT_LAB}); with --sim, the lab to simulate",
    )
    run.add_argument(
        "--sim",
        action="store_true",
        help="run on the simulated lab: the study's, or the one --lab describes (its link "
        "speed, guest memory and vCPUs, host names), to predict a migration",
    )
    run.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="N",
        help=f"with --sim: simulated seconds per real second, at most, up to "
        f"{MAX_SIM_SPEED:g}; or max: as fast as the CPU goes, the same run (default: "
        f"{DEFAULT_SIM_SPEED:g})",
    )
    run.add_argument(
        "--seed",
        type=numbers.seed,
        default=None,
        metavar="N",
        help="with --sim: the model's random seed, 0 by default (the same seed, the same run)",
    )
    run.add_argument(
        "--log",
        type=Path,
        default=None,
        help="the session log to write (default: sessions/SCENARIO-YYYYmmdd-HHMMSS.jsonl)",
    )
    run.add_argument(
        "--repeat",
        type=_repeat,
        default=None,
        metavar="N",
        help=f"repetitions, 1 to {MAX_REPETITIONS} (default: the scenario's)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="the scenario's timeline shortened (x0.1, a few seconds per part at least)",
    )
    run.add_argument(
        "--headless",
        action="store_true",
        help="print lines instead of opening the console (the only mode for now)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands per host and change nothing (connects to look)",
    )
    run.set_defaults(handler=handle)


def _scenario(args: argparse.Namespace) -> Scenario:
    try:
        scenario = find_scenario(args.scenario)
    except ConfigError as err:
        raise BadInput("\n".join(str(e) for e in err.errors)) from None
    return scenario.quick() if args.quick else scenario


def scenario_inputs(scenario: Scenario) -> ScenarioInputs | None:
    """The scenario's own ``[simulation]`` inputs for the simulated lab, and its file."""
    if scenario.simulation is None:
        return None
    where = scenario.source or scenario.id
    return ScenarioInputs(
        scenario.simulation, f"built-in {scenario.id}" if where == "built-in" else where
    )


def default_log_path(scenario: Scenario, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path("sessions") / f"{scenario.id}-{stamp}.jsonl"


def handle(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    if args.sim:
        return _handle_sim(args, scenario)
    if args.speed is not None or args.seed is not None:
        raise BadInput("--speed and --seed are for the simulated lab: add --sim")
    lab = load(args.lab or DEFAULT_LAB)
    _check_fits(scenario, lab)
    log = _log_path(args, scenario)
    if args.dry_run:
        return asyncio.run(_dry_run(lab, scenario, args.repeat))
    return asyncio.run(_run(lab, scenario, args.repeat, log))


def _check_fits(scenario: Scenario, lab: LabConfig) -> None:
    problems = scenario.lab_problems(lab)
    if problems:
        raise BadInput(f"scenario {scenario.id} does not fit this lab: " + "; ".join(problems))


def _log_path(args: argparse.Namespace, scenario: Scenario) -> Path:
    log: Path = args.log if args.log is not None else default_log_path(scenario)
    if not args.dry_run and os.path.lexists(log):
        raise BadInput(f"{log} exists; a session log is never overwritten (choose --log)")
    return log


def _handle_sim(args: argparse.Namespace, scenario: Scenario) -> int:
    source = load(args.lab) if args.lab else None
    if source is not None:
        try:
            check_simulatable(source)
        except ValueError as exc:
            raise BadInput(f"{args.lab}: {exc}") from None
        _check_fits(scenario, source)
    # This machine is no simulated host: a ping from here would reach nothing simulated.
    on_console = [e.kind for e in scenario.entries if e.place == CONSOLE]
    if on_console:
        raise BadInput(
            f"scenario {scenario.id} runs {', '.join(on_console)} on the console (this "
            'machine); the simulated lab runs probes on its hosts: use where = "storage" '
            "or a host name"
        )
    log = _log_path(args, scenario)
    speed = args.speed if args.speed is not None else DEFAULT_SIM_SPEED
    seed = args.seed if args.seed is not None else 0
    main = _simulated(source, scenario, args.repeat, None if args.dry_run else log, speed, seed)
    return sim_loop.run(main)


async def _simulated(
    source: LabConfig | None,
    scenario: Scenario,
    repeat: int | None,
    log: Path | None,
    speed: float,
    seed: int,
) -> int:
    """Start the simulated lab, run (or plan) on it with its clock as the event clock."""
    try:
        sim = await SimulatedLab.open(
            source, speed=speed, seed=seed, scenario=scenario_inputs(scenario)
        )
    except OSError as exc:
        print(f"miglab: cannot start the simulated lab: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if log is None:
            return await _dry_run(sim.lab_config, scenario, repeat, sim)
        return await _run(sim.lab_config, scenario, repeat, log, sim)
    finally:
        await sim.close()


def _runner(
    lab: LabConfig,
    scenario: Scenario,
    repeat: int | None,
    log: Path | None,
    sim: SimulatedLab | None = None,
) -> ExperimentRunner:
    """The run's session (on the simulated lab's clock, if any: everything recorded is on
    simulated time) and its runner, which begins and ends the session log ``log``."""
    session = LabSession(lab, sim=sim, log=log)
    runner = session.experiment(scenario, repetitions=repeat, records=True)
    problem = runner.unsupported()
    if problem is not None:
        raise BadInput(problem)
    session.use_clock()  # until the session closes
    return runner


async def _dry_run(
    lab: LabConfig, scenario: Scenario, repeat: int | None, sim: SimulatedLab | None = None
) -> int:
    runner = _runner(lab, scenario, repeat, None, sim)
    try:
        plan = await runner.plan()
    except (RunAborted, DriverError, CommandFailed, TransportError) as exc:
        # Each names the host, the command and its stderr: the message is the answer.
        print(f"miglab: {printable(str(exc), keep_newlines=True)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await runner.session.close()
    sys.stdout.write(printable(plan.render(), keep_newlines=True))
    return EXIT_OK


async def drive(runner: ExperimentRunner) -> int:
    """Run ``runner`` to its end (SIGINT/SIGTERM stop it, and it cleans up first), then
    close its session (hosts, bus). The exit code when it left no result (interrupted, or
    aborted: the reason is printed); otherwise ``runner.result`` says how it went."""
    task = asyncio.ensure_future(runner.run())
    try:
        with _stop_on_signals(task):
            await asyncio.wait({task})
        await task
    except asyncio.CancelledError:  # stopped by a signal: the run cleaned up first
        pass
    except RunAborted as exc:  # it may quote a host's stderr: shown, never run
        print(f"miglab: {printable(str(exc), keep_newlines=True)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await runner.session.close()
    return EXIT_INTERRUPTED if task.cancelled() else EXIT_FAILED


async def _run(
    lab: LabConfig,
    scenario: Scenario,
    repeat: int | None,
    log: Path,
    sim: SimulatedLab | None = None,
) -> int:
    runner = _runner(lab, scenario, repeat, log, sim)
    runner.session.bus.subscribe(HeadlessPrinter(sys.stdout))
    code = await drive(runner)
    result = runner.result
    if result is None:
        return code
    if result.log_error is not None:  # the run stopped because nothing could be recorded
        why = str(result.error or result.log_error)
        print(f"miglab: {printable(why, keep_newlines=True)}", file=sys.stderr)
        if result.log_path is not None:
            print(f"miglab: {result.log_path} is kept up to its last line", file=sys.stderr)
    await _summary(result)
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


@contextlib.contextmanager
def _stop_on_signals(task: asyncio.Future[Any]) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) cancels the run once; more of them do not cut its cleanup short
    (asyncio's own handler would raise KeyboardInterrupt at the second)."""
    loop = asyncio.get_running_loop()
    asked = False

    def stop() -> None:
        nonlocal asked
        if task.done():
            return
        if asked:
            print("miglab: still stopping what the run started ...", file=sys.stderr)
            return
        asked = True
        print("miglab: stopping: ending the probes and workloads ...", file=sys.stderr)
        task.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop)
    try:
        yield
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


async def _summary(result: RunResult) -> None:
    if result.log_path is None:
        return
    try:
        report = await asyncio.to_thread(load_report, result.log_path)
    except SessionLogError as exc:
        print(f"miglab: {printable(str(exc))}", file=sys.stderr)
        return
    sys.stdout.write("\n" + render_text(report))
    print(f"\nsession log: {result.log_path} (`miglab report {result.log_path}`)")
