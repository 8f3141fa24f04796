"""`miglab run SCENARIO`: run one experiment on a lab and write its session log.

Headless for now (the console's run view does not exist yet): one line per phase and
migration as they happen, then the report of the saved log. Exit 0 when the run
completed, 1 when it failed (a migration failed, a host was lost or said no), 2 for
bad input, 130 when interrupted (Ctrl-C: everything the run started is stopped first
and the log is closed with status "interrupted").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backend.config import ConfigError, LabConfig
from backend.events import EventBus
from backend.experiments.headless import HeadlessPrinter
from backend.experiments.report import load_report, render_text
from backend.experiments.runner import ExperimentRunner, RunAborted, RunResult
from backend.experiments.scenarios import Scenario, find_scenario
from backend.session import SessionLogError
from backend.transport.hosts import Hosts
from tui.commands.common import DEFAULT_LAB, EXIT_FAILED, EXIT_OK, BadInput, load

EXIT_INTERRUPTED = 130
SIM_UNAVAILABLE = "the simulated lab is not available yet (use --lab with a lab file)"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run one experiment (a scenario) on a lab and write its session log",
        description="Run SCENARIO (a built-in id, see `miglab scenarios`, or a scenario "
        "file): prepare the storage if needed, boot the guest if it runs nowhere, start "
        "the probes and workloads, mark the phases, migrate, stop everything it started "
        "(also on Ctrl-C or an error) and write the session log. Runs headless for now "
        "(--headless is the default): a line per phase and migration, then the report. "
        "Exit 1 if a migration failed or a host was lost.",
    )
    run.add_argument("scenario", metavar="SCENARIO", help="a built-in scenario id or a file")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--lab", default=None, help=f"the lab file (default: {DEFAULT_LAB})")
    where.add_argument("--sim", action="store_true", help="run on the built-in simulated lab")
    run.add_argument(
        "--log",
        type=Path,
        default=None,
        help="the session log to write (default: sessions/SCENARIO-YYYYmmdd-HHMMSS.jsonl)",
    )
    run.add_argument(
        "--repeat",
        type=_positive,
        default=None,
        metavar="N",
        help="repetitions (default: the scenario's)",
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


def default_log_path(scenario: Scenario, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path("sessions") / f"{scenario.id}-{stamp}.jsonl"


def handle(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    if args.sim:
        raise BadInput(SIM_UNAVAILABLE)
    lab = load(args.lab or DEFAULT_LAB)
    problems = scenario.lab_problems(lab)
    if problems:
        raise BadInput(f"scenario {scenario.id} does not fit this lab: " + "; ".join(problems))
    log = args.log if args.log is not None else default_log_path(scenario)
    if not args.dry_run and os.path.lexists(log):
        raise BadInput(f"{log} exists; a session log is never overwritten (choose --log)")
    if args.dry_run:
        return asyncio.run(_dry_run(lab, scenario, args.repeat))
    return asyncio.run(_run(lab, scenario, args.repeat, log))


def _runner(
    lab: LabConfig, scenario: Scenario, repeat: int | None, log: Path | None
) -> tuple[ExperimentRunner, Hosts, EventBus]:
    bus = EventBus()
    hosts = Hosts(lab, bus.publish)
    runner = ExperimentRunner(lab, hosts, bus, scenario, repetitions=repeat, log_path=log)
    problem = runner.unsupported()
    if problem is not None:
        raise BadInput(problem)
    return runner, hosts, bus


async def _dry_run(lab: LabConfig, scenario: Scenario, repeat: int | None) -> int:
    runner, hosts, bus = _runner(lab, scenario, repeat, None)
    try:
        plan = await runner.plan()
    except RunAborted as exc:
        print(f"miglab: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await hosts.close()
        await bus.aclose()
    sys.stdout.write(plan.render())
    return EXIT_OK


async def _run(lab: LabConfig, scenario: Scenario, repeat: int | None, log: Path) -> int:
    runner, hosts, bus = _runner(lab, scenario, repeat, log)
    bus.subscribe(HeadlessPrinter(sys.stdout))
    task = asyncio.ensure_future(runner.run())
    try:
        with _stop_on_signals(task):
            await asyncio.wait({task})
        await task
    except asyncio.CancelledError:  # stopped by a signal: the run cleaned up first
        pass
    except RunAborted as exc:
        print(f"miglab: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await hosts.close()
        await bus.aclose()
    result = runner.result
    if result is None:
        return EXIT_INTERRUPTED if task.cancelled() else EXIT_FAILED
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
        print(f"miglab: {exc}", file=sys.stderr)
        return
    sys.stdout.write("\n" + render_text(report))
    print(f"\nsession log: {result.log_path} (`miglab report {result.log_path}`)")
