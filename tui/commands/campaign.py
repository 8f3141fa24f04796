"""`miglab campaign FILE.toml`: a matrix of scenarios x parameters x repetitions, run by run.

Each run is what `miglab run` does (the same runner, the same cleanup on Ctrl-C or a
failure: :func:`tui.commands.run.drive`), with its own session log in
``OUT/GROUP/rN.jsonl`` whose header says which campaign run it is. Started again, a
campaign picks up at the first run without a complete log (see
:mod:`backend.experiments.campaign`). Exit 0 when every run is done, 1 when a run failed
(the campaign stops there and says so), 2 for bad input, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from backend.config import LabConfig
from backend.events import set_clock
from backend.experiments.campaign import (
    SEED_KEY,
    CampaignRun,
    LoadedCampaign,
    apply_parameters,
    campaign_dir,
    load_campaign,
    pending,
    plan_runs,
    set_aside,
)
from backend.experiments.runner import CONSOLE
from backend.lab_session import LabSession
from backend.sim import loop as sim_loop
from backend.sim.lab import SimulatedLab
from backend.sim.labs import check_simulatable
from backend.sim.study import study_lab
from backend.terminal_text import printable
from backend.tomlfile import ConfigError
from tui.commands import SUBCOMMANDS
from tui.commands.common import DEFAULT_LAB, EXIT_FAILED, EXIT_OK, BadInput, load
from tui.commands.run import (
    DEFAULT_SIM_SPEED,
    EXIT_INTERRUPTED,
    _speed,
    drive,
    scenario_inputs,
)


def register(commands: Any) -> None:
    campaign = commands.add_parser(
        "campaign",
        help=SUBCOMMANDS["campaign"],
        description="Run every scenario of the campaign FILE for every combination of its "
        "parameters, REPETITIONS times each, one after another, one session log per run "
        "(OUT/GROUP/rN.jsonl). Started again, it picks up at the first run without a "
        "complete log. A failed run stops the campaign (exit 1). Then: `miglab results "
        "OUT -o results.csv` and `miglab compare OUT/GROUP_A OUT/GROUP_B`.",
    )
    campaign.add_argument("file", metavar="FILE", help="the campaign file (TOML)")
    campaign.add_argument(
        "--lab",
        default=None,
        help=f"the lab file (default: {DEFAULT_LAB}); with --sim, the lab to simulate",
    )
    campaign.add_argument(
        "--sim", action="store_true", help="run on the simulated lab (the study's, or --lab's)"
    )
    campaign.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="N",
        help=f"with --sim: simulated seconds per real second, at most (default: "
        f"{DEFAULT_SIM_SPEED:g})",
    )
    campaign.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the session logs go (default: sessions/NAME, NAME the campaign's)",
    )
    campaign.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs, which are done and which are left, and run nothing",
    )
    campaign.set_defaults(handler=handle)


def _load(file: str) -> LoadedCampaign:
    try:
        return load_campaign(file)
    except ConfigError as err:
        raise BadInput("\n".join(str(e) for e in err.errors)) from None


def _lab(args: argparse.Namespace, campaign: LoadedCampaign) -> LabConfig:
    """The lab the campaign runs on (to simulate, with --sim), each group's fit checked."""
    uses_seed = any(key == SEED_KEY for key, _ in campaign.parameters)
    if not args.sim:
        if args.speed is not None:
            raise BadInput("--speed is for the simulated lab: add --sim")
        if uses_seed:
            raise BadInput(
                f"{campaign.file}: parameters.{SEED_KEY} varies the simulated lab: add --sim"
            )
        lab = load(args.lab or DEFAULT_LAB)
    else:
        lab = load(args.lab) if args.lab else study_lab()
        try:
            check_simulatable(lab)
        except ValueError as exc:
            raise BadInput(f"{args.lab}: {exc}") from None
    for scenario in campaign.scenarios:
        problems = scenario.lab_problems(lab)
        if problems:
            raise BadInput(f"scenario {scenario.id} does not fit this lab: " + "; ".join(problems))
        on_console = [e.kind for e in scenario.entries if e.place == CONSOLE]
        if args.sim and on_console:
            raise BadInput(
                f"scenario {scenario.id} runs {', '.join(on_console)} on the console; the "
                "simulated lab runs probes on its hosts"
            )
    return lab


def handle(args: argparse.Namespace) -> int:
    campaign = _load(args.file)
    lab = _lab(args, campaign)
    out = campaign_dir(campaign, args.out)
    runs = plan_runs(campaign, out)
    todo = pending(runs)
    done = len(runs) - len(todo)
    matrix = " x ".join(
        _count(n, what)
        for n, what in (
            (len(campaign.scenarios), "scenario"),
            (len(campaign.groups()), "group"),
            (campaign.campaign.repetitions, "repetition"),
        )
    )
    print(
        f"campaign {campaign.name}: {_count(len(runs), 'run')} ({matrix}) in "
        f"{printable(str(out))}; {done} done, {len(todo)} to run",
        flush=True,
    )
    if args.dry_run:
        waiting = {id(run) for run in todo}
        for run in runs:
            state = "to run" if id(run) in waiting else "done"
            print(f"  {run.index:>4}  {state:<6}  {printable(str(run.log))}")
        return EXIT_OK
    speed = args.speed if args.speed is not None else DEFAULT_SIM_SPEED
    spent: list[float] = []
    for run in todo:
        aside = set_aside(run.log)
        if aside is not None:
            print(f"  kept the incomplete log as {printable(str(aside))}")
        print(f"[{run.index}/{len(runs)}] {run.describe()} ...", flush=True)
        began = time.monotonic()
        run_lab = apply_parameters(lab, run.parameters)
        if args.sim:
            code = sim_loop.run(_simulated(run_lab, run, campaign, speed))
        else:
            code = asyncio.run(_run(run_lab, run, campaign))
        if code != EXIT_OK:
            print(
                f"miglab: campaign stopped at run {run.index} ({run.describe()}); its log "
                f"{printable(str(run.log))} is kept; `miglab campaign {printable(args.file)}` "
                "again picks up there",
                file=sys.stderr,
            )
            return code
        spent.append(time.monotonic() - began)
        done += 1
        print(f"  ok in {spent[-1]:.1f} s; {_progress(done, len(runs), spent)}", flush=True)
    print(
        f"all {len(runs)} runs done: `miglab results {printable(str(out))} -o results.csv`, "
        f"`miglab compare {printable(str(out))}/GROUP_A {printable(str(out))}/GROUP_B`"
    )
    return EXIT_OK


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _progress(done: int, total: int, spent: list[float]) -> str:
    left = total - done
    line = f"{done} done, {left} left"
    if left and spent:
        line += f", about {_duration(sum(spent) / len(spent) * left)} left"
    return line


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    return f"{minutes // 60:.0f} h {minutes % 60:.0f} min"


async def _simulated(
    source: LabConfig, run: CampaignRun, campaign: LoadedCampaign, speed: float
) -> int:
    try:
        sim = await SimulatedLab.open(
            source, speed=speed, seed=run.seed, scenario=scenario_inputs(run.scenario)
        )
    except OSError as exc:
        print(f"miglab: cannot start the simulated lab: {exc}", file=sys.stderr)
        return EXIT_FAILED
    set_clock(sim.clock)  # one clock: everything recorded is on simulated time
    try:
        return await _run(sim.lab_config, run, campaign, sim)
    finally:
        set_clock(None)
        await sim.close()


async def _run(
    lab: LabConfig, run: CampaignRun, campaign: LoadedCampaign, sim: SimulatedLab | None = None
) -> int:
    """One run, as `miglab run` does it: the same runner, stopped the same way."""
    session = LabSession(lab, sim=sim, log=run.log)
    runner = session.experiment(run.scenario, records=True, campaign=run.header(campaign))
    problem = runner.unsupported()
    if problem is not None:
        await session.close()
        raise BadInput(problem)
    code = await drive(runner)
    result = runner.result
    if result is None:
        return code
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if not result.ok:
        why = result.error or result.log_error or result.status
        print(f"miglab: run {run.index}: {printable(why, keep_newlines=True)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
