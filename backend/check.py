"""Pre-flight checks: is every host reachable, what does it run, which lab tools does it have."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.config import LabConfig
from backend.drivers import ParseError
from backend.drivers.parse_xl import parse_xl_info
from backend.transport.base import HostRunner
from backend.transport.hosts import Hosts

# The programs a lab host may need, by role; reported as found (path) or missing (None).
LAB_TOOLS = (
    "tgtadm",
    "targetcli",
    "ietadm",
    "iscsiadm",
    "iscsi-ls",
    "xl",
    "qemu-system-x86_64",
    "ping",
    "sysbench",
    "dbench",
)

# Non-login SSH sessions often lack the sbin directories where the target tools live.
_FIND_TOOLS = (
    'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; '
    'for t in "$@"; do printf "%s %s\\n" "$t" "$(command -v "$t" || echo -)"; done'
)


@dataclass
class HostReport:
    reachable: bool
    rtt_ms: float | None = None
    kernel: str | None = None
    tools: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None
    xen_version: str | None = None  # `xl info xen_version`, where xl is found


async def probe_host(runner: HostRunner, rtt_ms: float | None) -> HostReport:
    uname, tools = await asyncio.gather(
        runner.run(["uname", "-sr"], timeout=15),
        runner.run(["sh", "-c", _FIND_TOOLS, "miglab-check", *LAB_TOOLS], timeout=15),
    )
    report = HostReport(reachable=True, rtt_ms=rtt_ms)
    if uname.ok:
        report.kernel = uname.stdout.strip()
    else:
        report.error = f"`uname -sr` failed: {uname.failure or uname.stderr.strip()}"
    for line in tools.stdout.splitlines():
        name, _, path = line.partition(" ")
        if name in LAB_TOOLS:
            report.tools[name] = None if path in ("", "-") else path
    if xl := report.tools.get("xl"):
        # All of `xl info`: `xl info FIELD` prints one value only since Xen 4.9.
        info = await runner.run([xl, "info"], timeout=30)
        try:
            report.xen_version = parse_xl_info(info.stdout).xen_version if info.ok else None
        except ParseError:
            pass
        if report.xen_version is None and report.error is None:
            why = info.failure or info.stderr.strip() or "no xen_version"
            report.error = f"`xl info` failed: {why}"
    return report


async def check_lab(lab: LabConfig, hosts: Hosts) -> dict[str, HostReport]:
    """Connect every host (concurrently) and report on each; never raises for a host."""
    errors = await hosts.open()
    reports: dict[str, HostReport] = {}

    async def one(name: str) -> None:
        error = errors[name]
        if error is not None:
            reports[name] = HostReport(reachable=False, error=error.message)
            return
        runner = hosts[name]
        reports[name] = await probe_host(runner, getattr(runner, "rtt_ms", 0.0))

    await asyncio.gather(*(one(name) for name in lab.hosts))
    return {name: reports[name] for name in lab.hosts}


def reports_as_json(lab: LabConfig, reports: dict[str, HostReport]) -> dict[str, Any]:
    return {"lab": lab.lab.name, "hosts": {name: asdict(r) for name, r in reports.items()}}
