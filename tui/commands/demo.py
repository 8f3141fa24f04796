"""`miglab demo`: the console on the built-in simulated lab (no root, no network).

It starts the simulated lab of the 2009 study (or, with ``--lab F``, of the lab F
describes) in this process: SSH servers on loopback that answer xl, ietadm, iscsiadm,
ping, sysbench and dbench in their real formats, on a simulated clock ``--speed``
times as fast as the wall clock, once the console has drawn its first frame (the
first frame waits for nothing it does not show). The console then drives it exactly as
it drives a real lab (the same LabController, drivers and runner, over SSH); the status
bar's SIMULATED badge and the title say that it is not. On quit, whatever runs is stopped
(its cleanup runs), the session log ``sessions/console-*.jsonl`` is saved, and the
simulated lab stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.sim.study import study_lab_data
from tui.backend_api import ConsoleBackend, LabLayout
from tui.commands import SUBCOMMANDS, numbers
from tui.commands.common import EXIT_FAILED, BadInput, load
from tui.deferred_backend import DeferredBackend, load_modules, make_live_backend

if TYPE_CHECKING:
    from backend.config import LabConfig
    from tui.app import MiglabApp

DEFAULT_SPEED = 10.0
"""Simulated seconds per real second: the study's 90 s migration takes 9 s to watch."""
MAX_SPEED = 1000.0
TITLE = "miglab demo · SIMULATED lab"


class DemoUnavailable(Exception):
    """The simulated lab could not start (no loopback port, no temporary directory)."""


_speed = numbers.float_range(0, MAX_SPEED, above_low=True)


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help=SUBCOMMANDS["demo"],
        description="Open the console on a simulated copy of the 2009 study's lab (Xen, IET "
        "iSCSI, 100 Mbit/s, a 1 GB guest), running in this process: p prepares the "
        "storage, b boots the guest, m migrates it, r runs a scenario, ? lists every key. "
        "Nothing leaves this machine; the session log is saved on quit.",
    )
    demo.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        metavar="N",
        help="simulated seconds per real second (default: %(default)g)",
    )
    demo.add_argument(
        "--seed",
        type=numbers.seed,
        default=0,
        metavar="S",
        help="the model's random seed (default: 0)",
    )
    demo.add_argument(
        "--lab",
        default=None,
        metavar="F",
        help="simulate the lab this lab.toml describes (its link speed, guest memory and "
        "vCPUs, host names) instead of the study's",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="the scenarios' timelines shortened (x0.1, a few seconds per part at least)",
    )
    demo.add_argument(
        "--log-dir",
        type=Path,
        default=Path("sessions"),
        metavar="DIR",
        help="where the session log is written (default: %(default)s)",
    )
    demo.add_argument(
        "--theme", default=None, help="miglab-dark, miglab-light or miglab-high-contrast"
    )
    demo.set_defaults(handler=run)


def _source(path: str | None) -> LabConfig | None:
    """The lab to simulate: None for the study's, else lab.toml's if it can be simulated."""
    if path is None:
        return None
    from backend.sim.labs import check_simulatable

    lab = load(path)
    try:
        check_simulatable(lab)
    except ValueError as exc:
        raise BadInput(f"{path}: {exc}") from None
    return lab


def run(args: argparse.Namespace) -> int:
    source = _source(args.lab)
    from tui.app import ThemeFileError, load_themes

    if args.theme is not None:
        themes = [theme.name for theme in load_themes()]
        if args.theme not in themes:
            raise BadInput(f"no theme {args.theme!r}; themes: {', '.join(themes)}")
    try:
        return asyncio.run(
            _demo(
                source,
                speed=args.speed,
                seed=args.seed,
                quick=args.quick,
                log_dir=args.log_dir,
                theme=args.theme,
            )
        )
    except ThemeFileError as error:
        raise BadInput(str(error)) from None


async def _demo(
    source: LabConfig | None,
    *,
    speed: float,
    seed: int,
    quick: bool,
    log_dir: Path,
    theme: str | None,
) -> int:
    async with open_demo(
        source, speed=speed, seed=seed, quick=quick, log_dir=log_dir, theme=theme
    ) as app:
        await app.run_async()
        code = app.return_code or 0
        backend = app.backend
    log = backend.session_log
    if isinstance(backend, DeferredBackend) and backend.start_error is not None:
        print(f"miglab: {backend.start_error}", file=sys.stderr)
        return EXIT_FAILED
    if log is not None:
        with contextlib.suppress(OSError):  # the terminal hung up: the log is saved anyway
            print(f"session log: {log} (`miglab report {log}`)", flush=True)
    return code


@contextlib.asynccontextmanager
async def open_demo(
    source: LabConfig | None = None,
    *,
    speed: float = DEFAULT_SPEED,
    seed: int = 0,
    quick: bool = False,
    log_dir: Path = Path("sessions"),
    theme: str | None = None,
) -> AsyncIterator[MiglabApp]:
    """The console app on the simulated lab, not yet running. The lab itself starts once
    the console has drawn its first frame (:mod:`tui.deferred_backend`); everything is
    stopped on exit (the backend is closed if the app did not close it)."""
    from tui.app import MiglabApp
    from tui.widgets.safe_text import clean

    # The study's lab is read as plain TOML here (no models: they load after the first
    # frame, with the simulated lab); a lab.toml was read and checked by the caller.
    if source is not None:
        layout = LabLayout.from_config(source)
    else:
        layout = LabLayout.from_lab_dump(study_lab_data())

    async def make(session_start: float, cleanup: contextlib.AsyncExitStack) -> ConsoleBackend:
        await load_modules("backend.sim.lab")
        from backend.sim.lab import SimulatedLab

        try:
            sim = await SimulatedLab.open(source, speed=speed, seed=seed, epoch=session_start)
        except OSError as exc:
            raise DemoUnavailable(f"cannot start the simulated lab: {exc}") from None
        cleanup.push_async_callback(sim.close)
        return await make_live_backend(
            sim.lab_config,
            readonly=False,
            session_start=session_start,
            log_dir=log_dir,
            simulated=True,
            sim=sim,
            quick=quick,
        )

    backend = DeferredBackend(layout, make, simulated=True, readonly=False)
    try:
        app = MiglabApp(backend, theme=theme)
        app.title = TITLE
        # The lab's name is the user's text: shown as text (a header would parse markup).
        app.sub_title = f"{clean(layout.name)} at {speed:g}× speed, seed {seed}"
        yield app
    finally:
        await backend.close()
