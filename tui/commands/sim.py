"""`miglab sim serve`: keep the simulated lab's hosts up, for plain `ssh` by hand.

Prints one `ssh ...` line per simulated machine (the storage node, both hypervisor hosts
(xl, or QEMU with its QMP socket as lab.toml says), the guest) and serves until Ctrl-C
(exit 0). `--lab F` simulates the lab F describes (its link speed, guest memory and
vCPUs, host names, hypervisor) instead of the 2009 study's; `--ready` exports the disk,
logs both hosts in (a Xen lab) and boots the guest first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
from typing import Any

from backend.config import LabConfig
from tui.commands import SUBCOMMANDS, numbers
from tui.commands.common import EXIT_FAILED, EXIT_OK, BadInput, load


def register(commands: Any) -> None:
    sim = commands.add_parser(
        "sim",
        help=SUBCOMMANDS["sim"],
        description="The simulated lab: in-process SSH hosts that answer miglab's commands "
        "(xl, ietadm, iscsiadm, ping, sysbench, dbench...) on a simulated clock.",
    )
    actions = sim.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="keep the simulated hosts up for ssh by hand (Ctrl-C stops)",
        description="Start the simulated hosts on loopback ports, print how to ssh to each, "
        "and serve until Ctrl-C.",
    )
    serve.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="simulated seconds per real second (default: %(default)s)",
    )
    serve.add_argument(
        "--lab", help="simulate the lab this lab.toml describes (default: the study's)"
    )
    serve.add_argument(
        "--seed", type=numbers.seed, default=0, help="the model's random seed (default: 0)"
    )
    serve.add_argument(
        "--ready",
        action="store_true",
        help="export the disk, log both Xen hosts in and boot the guest before serving",
    )
    serve.set_defaults(handler=run_serve)


_speed = numbers.float_range(0, 1000, above_low=True)


def run_serve(args: argparse.Namespace) -> int:
    from backend.sim.labs import check_simulatable

    lab = load(args.lab) if args.lab else None
    if lab is not None:
        try:
            check_simulatable(lab)
        except ValueError as exc:
            raise BadInput(f"{args.lab}: {exc}") from None
    try:
        return asyncio.run(_serve(lab, args.speed, args.seed, args.ready))
    except KeyboardInterrupt:
        print("miglab sim: stopped", file=sys.stderr)
        return EXIT_OK
    except OSError as exc:
        raise BadInput(f"cannot start the simulated hosts: {exc}") from None


async def _serve(lab: LabConfig | None, speed: float, seed: int, ready: bool) -> int:
    from backend.sim.lab import SimulatedLab, prepare

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with SimulatedLab.start(lab, speed=speed, seed=seed) as sim:
        src = sim.source
        print(
            f"miglab: SIMULATED lab {src.lab.name!r}: {src.lab.link_mbit} Mbit/s, guest "
            f"{src.guest.name} ({src.guest.memory_mb} MB, {src.guest.vcpus} vCPU); "
            f"speed {speed:g}x, seed {seed}"
        )
        if ready:
            problems = await prepare(sim)
            for problem in problems:
                print(f"miglab sim: {problem}", file=sys.stderr)
            if problems:
                return EXIT_FAILED
            how = (
                "QEMU logs in itself" if src.hypervisor.driver == "qemu" else "both hosts logged in"
            )
            print(f"  disk exported, {how}, guest booting on {src.hypervisor.hosts[0]}")
        width = max(len(e.name) for e in sim.endpoints())
        for e in sim.endpoints():
            print(f"  {e.name:<{width}}  {e.role:<10}  {shlex.join(sim.ssh_command(e.name))}")
        if not ready and src.hypervisor.driver == "qemu":
            print(
                f"  (the guest answers once booted: QEMU started on {src.hypervisor.hosts[0]} "
                "as miglab's qemu driver starts it, after the disk is exported)"
            )
        elif not ready:
            print(
                f"  (the guest answers once booted: xl create {sim.world.guest_config_path} "
                f"on {src.hypervisor.hosts[0]}, after the disk is exported and logged in)"
            )
        print("Serving; Ctrl-C stops.", flush=True)
        await stop.wait()
    return EXIT_OK
