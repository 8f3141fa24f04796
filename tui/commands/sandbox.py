"""`miglab sandbox up|down|status`: a real three-host lab in network namespaces (root)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from backend.config import MAX_LINK_MBIT, MAX_MEMORY_MB
from backend.sandbox.guest_image import GuestImageError
from backend.sandbox.initramfs import InitramfsError
from backend.sandbox.layout import default_sandbox_dir
from backend.sandbox.processes import SpawnError
from backend.sandbox.sandbox import (
    DEFAULT_GUEST_MB,
    DEFAULT_LINK_MBIT,
    HYPERVISOR_KINDS,
    MIN_GUEST_MB,
    PreflightFailed,
    Sandbox,
    SandboxError,
    SandboxStatus,
)
from backend.transport.base import CommandFailed
from tui.commands import SUBCOMMANDS, numbers
from tui.commands.common import EXIT_FAILED, EXIT_OK, BadInput


def register(commands: Any) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help=SUBCOMMANDS["sandbox"],
        description="Build, inspect or remove the sandbox: a storage node and two hypervisor "
        "hosts in network namespaces on one bridge, each with its own sshd, tgtd exporting "
        "the shared disk, links shaped to the study's 100 Mbit/s, and a guest image. "
        "`up` writes DIR/lab.toml for `miglab --lab`.",
    )
    actions = sandbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    directory = {
        "type": Path,
        "default": None,
        "help": f"the sandbox directory (default: {default_sandbox_dir()})",
    }

    up = actions.add_parser(
        "up",
        help="build the lab (cleans up a crashed run first)",
        description="Build the lab and write DIR/lab.toml. Needs root. A first run downloads "
        "the guest's kernel and packages; later runs reuse them.",
    )
    up.add_argument(
        "--link-mbit",
        type=numbers.int_range(1, MAX_LINK_MBIT),
        default=DEFAULT_LINK_MBIT,
        help="speed of every host's link in Mbit/s (default: %(default)s, as in the study)",
    )
    up.add_argument(
        "--guest-mb",
        type=numbers.int_range(MIN_GUEST_MB, MAX_MEMORY_MB),
        default=DEFAULT_GUEST_MB,
        help="the guest's memory in MiB, written to lab.toml (default: %(default)s)",
    )
    up.add_argument(
        "--hypervisor",
        choices=HYPERVISOR_KINDS,
        default="qemu",
        help="qemu: the hosts are namespaces running QEMU guests; xen: the hosts are Xen 4.17 "
        "hosts (QEMU VMs with a Debian dom0, open-iscsi and xl; slow under TCG: a cold "
        "`up` takes minutes) (default: %(default)s)",
    )
    up.add_argument("--dir", **directory)
    up.set_defaults(handler=run_up)

    down = actions.add_parser(
        "down",
        help="stop every process the sandbox started and remove its namespaces and links",
        description="Stop what `up` started and remove what it made, as its state file "
        "lists them. Safe to run twice. Keys, the guest image and the disk stay for next time.",
    )
    down.add_argument("--dir", **directory)
    down.set_defaults(handler=run_down)

    status = actions.add_parser(
        "status",
        help="show what is up",
        description="Show the sandbox's namespaces, links and processes, each checked. "
        "Exit 0 when it is up and whole, 1 otherwise (down, or something missing).",
    )
    status.add_argument("--dir", **directory)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=run_status)


def _sandbox(args: argparse.Namespace) -> Sandbox:
    return Sandbox(args.dir or default_sandbox_dir(), progress=_Progress())


class _Progress:
    """One line per step, with the time since the command started (a cold Xen `up`
    downloads and builds for minutes)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", flush=True)


# TimeoutError (a daemon that does not answer) is an OSError.
_FAILURES = (SandboxError, CommandFailed, GuestImageError, InitramfsError, SpawnError, OSError)


def _failed(action: str, exc: BaseException) -> int:
    # Reported like a host that said no: exit 1 with the reason, no traceback.
    print(f"miglab: sandbox {action} failed: {exc}", file=sys.stderr)
    return EXIT_FAILED


def run_up(args: argparse.Namespace) -> int:
    sandbox = _sandbox(args)
    try:
        state = asyncio.run(
            sandbox.up(
                link_mbit=args.link_mbit,
                guest_mb=args.guest_mb,
                hypervisor=getattr(args, "hypervisor", "qemu"),
            )
        )
    except PreflightFailed as exc:
        raise BadInput(str(exc)) from None
    except _FAILURES as exc:
        return _failed("up", exc)
    status = asyncio.run(sandbox.status())
    addresses = ", ".join(f"{name} {addr}" for name, addr in status.addresses.items())
    print(f"{state.prefix}: {addresses}")
    print(f"lab file: {state.lab_file}")
    print(f"try: miglab check --connect --lab {state.lab_file}")
    return EXIT_OK


def run_down(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_sandbox(args).down())
    except _FAILURES as exc:
        return _failed("down", exc)
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    try:
        status = asyncio.run(_sandbox(args).status())
    except _FAILURES as exc:
        return _failed("status", exc)
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
    else:
        print(_describe(status))
    return EXIT_OK if status.up else EXIT_FAILED


def _describe(status: SandboxStatus) -> str:
    if status.phase == "down":
        return f"down: no sandbox in {status.directory}"
    head = "up" if status.up else f"NOT COMPLETE ({status.phase})"
    lines = [f"{head}: sandbox {status.prefix} in {status.directory}"]
    if status.lab_file:
        lines.append(f"  lab file   {status.lab_file}")
    lines.append(
        f"  link       {status.link_mbit} Mbit/s, guest {status.guest_mb} MiB, "
        f"hypervisor {status.hypervisor}"
    )
    lines.append("  addresses  " + ", ".join(f"{k} {v}" for k, v in status.addresses.items()))
    for what, items in (
        ("namespace", status.netns),
        ("link", status.links),
        ("process", status.processes),
    ):
        for name, present in items.items():
            state = "ok" if present else "MISSING"
            lines.append(f"  {what:<10} {name:<28} {state}")
    return "\n".join(lines)
