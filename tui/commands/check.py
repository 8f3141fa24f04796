"""`miglab check`: validate lab.toml; with --connect, reach every host and report."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from backend.config import LabConfig, lab_json_schema
from backend.events import EventBus
from backend.terminal_text import printable
from tui.commands import SUBCOMMANDS
from tui.commands.common import DEFAULT_LAB, EXIT_FAILED, EXIT_OK, load


def register(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help=SUBCOMMANDS["check"],
        description="Validate lab.toml. With --connect, open every host (concurrently) and "
        "report per host: reachable, round-trip time, kernel, and which lab tools it has. "
        "Exit 1 if a host is unreachable, 2 if lab.toml is invalid.",
    )
    check.add_argument("--lab", help=f"the lab file (default: {DEFAULT_LAB})")
    check.add_argument("--connect", action="store_true", help="connect to every host")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of lab.toml and exit"
    )
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(lab_json_schema(), indent=2))
        return EXIT_OK
    path = args.lab or DEFAULT_LAB
    lab = load(path)
    if not args.connect:
        if args.json:
            print(json.dumps({"lab": lab.lab.name, "valid": True, "file": path}))
        else:
            first, second = lab.hypervisor.hosts
            print(  # the lab's names are data: shown, never run as terminal escapes
                printable(
                    f"{path}: valid. Lab {lab.lab.name!r}: {len(lab.hosts)} hosts, "
                    f"{lab.storage.driver} target on {lab.storage.host}, "
                    f"{lab.hypervisor.driver} on {first} and {second}, "
                    f"guest {lab.guest.name} ({lab.guest.vcpus} vCPU, {lab.guest.memory_mb} MB), "
                    f"{lab.lab.link_mbit} Mbit/s."
                )
            )
        return EXIT_OK
    return asyncio.run(_check_connect(lab, args.json))


async def _check_connect(lab: LabConfig, as_json: bool) -> int:
    from backend.check import check_lab, reports_as_json
    from backend.transport.hosts import Hosts

    hosts = Hosts(lab, EventBus().publish)
    try:
        reports = await check_lab(lab, hosts)
    finally:
        await hosts.close()
    if as_json:
        print(json.dumps(reports_as_json(lab, reports), indent=2))
    else:
        width = max(len(name) for name in reports)
        for name, report in reports.items():
            if not report.reachable:
                print(printable(f"{name:<{width}}  UNREACHABLE  {report.error}"))
                continue
            found = " ".join(tool for tool, path in report.tools.items() if path) or "none"
            rtt = f"{report.rtt_ms:.1f} ms" if report.rtt_ms is not None else "? ms"
            line = f"{name:<{width}}  reachable  {rtt:>9}  {report.kernel or '?'}  tools: {found}"
            if report.xen_version:
                line += f"  Xen {report.xen_version}"
            print(printable(line + (f"  ({report.error})" if report.error else "")))
    return EXIT_OK if all(r.reachable for r in reports.values()) else EXIT_FAILED
