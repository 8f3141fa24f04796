"""Xen beside QEMU: `sandbox up --hypervisor xen` cold and warm, then the same migrations
on the Xen lab and on the QEMU sandbox, in one table.

Prints numbers; asserts nothing. Needs root and a long time (under TCG one Xen migration
of the 256 MiB guest takes 45-60 s idle, about 2 minutes under the dirtier). Each lab is
brought up in its own directory, used and taken down in turn (never both at once: they
would share the 2 cores), unless ``--xen-lab`` / ``--qemu-lab`` name labs that are up. For
each lab: the idle guest migrated ``--repeat`` times, then a freshly booted guest running
the RAM dirtier (``--dirty-mib`` of random data), every migration through LabController
under a 10 ms ping from the storage host (the network-measured unreachable time).

The physical limit of a migration is memory / link: ``guest_mb * 8 / link_mbit``
seconds. xl (4.17) prints no iteration counts and no downtime; QEMU gives both. On Xen
the downtime column is what the driver measures between xl -vvv's suspend request and the
target's "Domain started" line (an upper bound; hv_xen). Xen's
stop rules (4.6+): at most 5 iterations, then stop-and-copy.

    .venv/bin/python tests/bench/bench_xen_migration.py [--cold] [--repeat 1] [--dirty-mib 96]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.config import LabConfig, load_lab
from backend.drivers.hv_qemu import QemuDriver
from backend.drivers.hv_xen import XenDriver
from backend.probes.dirtier import dirtier_command
from backend.sandbox import Sandbox
from backend.sandbox.guest_image import default_cache_dir
from tests.bench.bench_sandbox_migration import OOPS_SCRIPT, Bench, Row

HEADER = (
    f"{'lab':<5} {'run':<18} {'ok':<3} {'total s':>8} {'mem/link s':>10} {'x limit':>7} "
    f"{'iters':>5} {'downtime ms':>11} {'unreach s':>9} {'lost':>5}"
)


class XenBench(Bench):
    """The QEMU sandbox's bench, on xl: the guest's console log is in dom0."""

    @property
    def driver(self) -> QemuDriver:  # the base class's type; a XenDriver here
        driver = self.controller.hypervisor
        assert isinstance(driver, XenDriver), "not a Xen lab"
        return driver  # type: ignore[return-value]

    def _console_log(self) -> str:
        return f"/var/log/xen/console/guest-{self.lab.guest.name}.log"

    async def _log_size(self, host: str) -> int:
        result = await self.hosts[host].run(["stat", "-c", "%s", self._console_log()])
        return int(result.stdout) if result.ok and result.stdout.strip().isdigit() else 0

    async def _oops(self, host: str, offset: int) -> str | None:
        argv = ["sh", "-c", OOPS_SCRIPT, "oops", self._console_log(), str(offset + 1)]
        found = await self.hosts[host].run(argv)
        return " / ".join(line.strip() for line in found.stdout.splitlines()) or None


def line(kind: str, lab: LabConfig, row: Row) -> str:
    limit = lab.guest.memory_mb * 2**20 * 8 / (lab.lab.link_mbit * 1e6)
    total = (row.outcome.total_time_ms or 0) / 1000
    iters = row.outcome.iterations
    down = row.outcome.downtime_ms
    unreachable = f"{row.unreachable_s:.2f}" if row.unreachable_s is not None else "-"
    return (
        f"{kind:<5} {row.label:<18} {'yes' if row.outcome.ok else 'NO':<3} {total:>8.1f} "
        f"{limit:>10.1f} {total / limit:>7.1f} {iters if iters is not None else '-':>5} "
        f"{f'{down:.0f}' if down is not None else '-':>11} {unreachable:>9} {row.lost:>5}"
        + (f"  {row.outcome.error}" if row.outcome.error else "")
        + (f"  OOPS: {row.oops}" if row.oops else "")
    )


async def bench(kind: str, lab: LabConfig, args: argparse.Namespace) -> list[str]:
    b: Bench = XenBench(lab) if kind == "xen" else Bench(lab)
    await b.open()
    lines: list[str] = []
    try:
        if kind == "xen":
            await b.controller.prepare()  # both dom0s log in with iscsiadm (QEMU needs none)
        await b.fresh_guest("host1")
        for n in range(1, args.repeat + 1):
            row = await b.migrate(f"idle #{n}", lab, limit_s=args.limit_s)
            lines.append(line(kind, lab, row))
            print(lines[-1], flush=True)
        await b.fresh_guest("host1")
        await b.start_load(dirtier_command(args.dirty_mib), "dirtier")
        row = await b.migrate(f"dirtier {args.dirty_mib} MiB", lab, limit_s=args.limit_s)
        lines.append(line(kind, lab, row))
        print(lines[-1], flush=True)
    finally:
        await b.close()
    return lines


def bench_dir(kind: str) -> Path:
    return default_cache_dir().parent / f"sandbox-bench-{kind}"


async def up_and_bench(kind: str, args: argparse.Namespace) -> list[str]:
    directory = bench_dir(kind)
    sandbox = Sandbox(directory, progress=lambda text: print(f"  {text}", flush=True))
    if args.cold and kind == "xen":
        # A cold `up`: nothing cached in this directory (apt's own cache is not ours).
        shutil.rmtree(directory, ignore_errors=True)
    times = []
    for attempt in ("first", "warm") if kind == "xen" else ("first",):
        started = time.monotonic()
        state = await sandbox.up(link_mbit=100, guest_mb=args.guest_mb, hypervisor=kind)  # type: ignore[arg-type]
        times.append(f"{attempt} {time.monotonic() - started:.1f} s")
        if attempt == "first" and kind == "xen":
            await sandbox.down()
    print(f"sandbox up --hypervisor {kind}: " + ", ".join(times), flush=True)
    try:
        assert state.lab_file is not None
        return await bench(kind, load_lab(state.lab_file), args)
    finally:
        await sandbox.down()


async def main(args: argparse.Namespace) -> None:
    if os.geteuid() != 0 and not (args.xen_lab and args.qemu_lab):
        raise SystemExit("needs root (it brings up the sandboxes), or --xen-lab and --qemu-lab")
    print(HEADER, flush=True)
    table: list[str] = []
    for kind, given in (("xen", args.xen_lab), ("qemu", args.qemu_lab)):
        if given:
            table += await bench(kind, load_lab(given), args)
        else:
            table += await up_and_bench(kind, args)
    print("\n" + "\n".join([HEADER, *table]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--xen-lab", help="a Xen sandbox lab.toml that is up")
    parser.add_argument("--qemu-lab", help="a QEMU sandbox lab.toml that is up")
    parser.add_argument("--cold", action="store_true", help="empty the Xen bench dir first")
    parser.add_argument("--repeat", type=int, default=1, help="idle migrations (default 1)")
    parser.add_argument("--dirty-mib", type=int, default=96, help="dirtier size (default 96)")
    parser.add_argument("--guest-mb", type=int, default=256, help="guest memory (default 256)")
    parser.add_argument(
        "--limit-s", type=float, default=1200, help="cancel a migration after this (1200)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
