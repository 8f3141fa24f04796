"""Live migration on the sandbox lab: how long, how much downtime, how long unreachable.

Prints numbers; asserts nothing. Needs root (it brings up its own `miglab sandbox`, a
256 MB guest on 100 Mbit/s links, and takes it down at the end, unless --lab names a
sandbox that is up) and takes several minutes. Every migration goes through
LabController, as the console does, with a ping every 10 ms from the storage host
(through its runner) measuring how long the guest is unreachable. Runs:

1. the idle guest, ``--repeat`` times (back and forth between host1 and host2);
2. the guest rewriting ``--dirty-mib`` of zeros in /dev/shm (the RAM dirtier as it was
   before it wrote random data), under the lab's convergence policy;
3. the guest running the RAM dirtier (random data), once per policy in ``--policies``;
   a migration still running after ``--limit-s`` is cancelled.

Each loaded run starts from a freshly booted guest, and after each migration the serial
console of the host that runs the guest is searched for a kernel oops.

    .venv/bin/python tests/bench/bench_sandbox_migration.py [--repeat 3] [--dirty-mib 96]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.config import LabConfig, load_lab
from backend.drivers.base import MigrationOutcome
from backend.drivers.hv_qemu import QemuDriver
from backend.events import Event, EventBus, MigrationProgress, Note, Sample
from backend.lab import LabController
from backend.probes import is_summary
from backend.probes.dirtier import DirtierParser, dirtier_command
from backend.probes.ping import PingParser, ping_command, unreachable_gaps
from backend.sandbox import Sandbox
from backend.sandbox.guest_image import default_cache_dir
from backend.transport.base import CommandResult, HostRunner, TransportError
from backend.transport.hosts import Hosts

HV_HOSTS = ("host1", "host2")
POLICIES = ("auto-converge", "raise-downtime", "none")
# The dirtier as it was before it wrote random data: zeros, rewritten in place.
ZEROS_SCRIPT = """\
trap 'rm -f -- "$1"' EXIT
trap 'exit 143' TERM
while :; do dd if=/dev/zero of="$1" bs=1M count="$2" conv=notrunc 2>/dev/null || exit 1; done
"""
# $1 a serial log, $2 the byte to start at: the first lines of a kernel oops after it.
OOPS_SCRIPT = 'tail -c +"$2" "$1" 2>/dev/null | grep -E "Oops|BUG:|Kernel panic" | head -n 2'


@dataclass
class Row:
    """One migration and what was measured around it."""

    label: str
    source: str
    dest: str
    outcome: MigrationOutcome
    wall_s: float
    unreachable_s: float | None
    lost: int
    longest_silence_s: float
    max_throttle: float | None
    mbps: float | None
    oops: str | None
    """The guest's kernel oops after the migration (on the host that runs it), if any."""
    notes: list[str] = field(default_factory=list)
    dirty_rate: tuple[float | None, float | None] = (None, None)  # MiB/s before, during


class Bench:
    def __init__(self, lab: LabConfig) -> None:
        self.lab = lab
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe(self.events.append)
        self.hosts = Hosts(lab, self.bus.publish)
        self._controller: LabController | None = None
        self.guest: HostRunner | None = None
        self.load: asyncio.Task[CommandResult] | None = None
        self.load_samples: list[Sample] = []

    async def open(self) -> None:
        errors = {h: e for h, e in (await self.hosts.open()).items() if e is not None}
        if errors:
            raise SystemExit(f"cannot reach the lab's hosts: {errors}")
        self._controller = LabController(self.lab, self.hosts, self.bus.publish)

    @property
    def controller(self) -> LabController:
        assert self._controller is not None, "open() first"
        return self._controller

    @property
    def driver(self) -> QemuDriver:
        driver = self.controller.hypervisor
        assert isinstance(driver, QemuDriver), "the sandbox lab is a qemu lab"
        return driver

    async def close(self) -> None:
        if self._controller is not None:
            await self.stop_guest()
        await self.hosts.close()

    # -- the guest

    async def ping_once(self) -> bool:
        argv = ping_command(self.lab.guest.address, count=1, reply_timeout_s=1)
        return (await self.hosts["storage"].run(argv, timeout=10)).ok

    async def stop_guest(self) -> None:
        """Stop its workload, close the SSH connection into it, destroy it everywhere."""
        if self.load is not None:
            self.load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.load
            self.load = None
        if self.guest is not None:
            await self.guest.close()
            self.guest = None
        for host in HV_HOSTS:
            await self.driver.destroy(host)

    async def fresh_guest(self, host: str) -> None:
        await self.stop_guest()
        started = time.monotonic()
        await self.controller.boot(host)
        while not await self.ping_once():
            if time.monotonic() - started > 180:
                raise SystemExit("the guest did not answer ping within 180 s of its boot")
            await asyncio.sleep(0.5)
        for _ in range(60):
            try:
                self.guest = await self.hosts.open_guest()
                break
            except TransportError:
                await asyncio.sleep(1.0)
        print(f"  (guest booted on {host}, answering after {time.monotonic() - started:.1f} s)")

    async def start_load(self, argv: list[str], what: str) -> None:
        """A workload in the guest over SSH (dirtier lines parsed); wait until it runs."""
        assert self.guest is not None
        parser = DirtierParser(self.lab.guest.name)
        self.load_samples = []
        started = asyncio.Event()

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                self.load_samples += parser.feed(line)
                if "round=" in line:
                    started.set()

        self.load = asyncio.ensure_future(
            self.guest.run(argv, timeout=None, on_line=on_line, long_running=True)
        )
        if what == "zeros":  # it prints nothing: give it a few rounds
            await asyncio.wait({self.load}, timeout=3.0)
        else:
            waiter = asyncio.ensure_future(started.wait())
            await asyncio.wait(
                {self.load, waiter}, timeout=120, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if started.is_set():
                await asyncio.wait({self.load}, timeout=3.0)  # a few undisturbed rounds
        if self.load.done():
            result = self.load.result()
            raise SystemExit(f"{what} ended at once: {result.stdout[-500:]}{result.stderr}")
        if what != "zeros" and not started.is_set():
            raise SystemExit(f"{what} printed no round within 120 s")

    def _load_rate(self, start: float, end: float) -> float | None:
        """The dirtier's mean MiB/s over its rounds that ended between ``start`` and ``end``."""
        rates = [
            s.values["mib_per_s"]
            for s in self.load_samples
            if not is_summary(s) and start <= s.t <= end
        ]
        values = [r for r in rates if r is not None]
        return statistics.fmean(values) if values else None

    async def _log_size(self, host: str) -> int:
        result = await self.hosts[host].run(["stat", "-c", "%s", self.driver.files(host).log])
        return int(result.stdout) if result.ok and result.stdout.strip().isdigit() else 0

    async def _oops(self, host: str, offset: int) -> str | None:
        log = self.driver.files(host).log
        found = await self.hosts[host].run(["sh", "-c", OOPS_SCRIPT, "oops", log, str(offset + 1)])
        text = " / ".join(line.strip() for line in found.stdout.splitlines())
        return text or None

    # -- one migration under a 10 ms ping

    async def migrate(self, label: str, lab: LabConfig, *, limit_s: float) -> Row:
        controller = LabController(lab, self.hosts, self.bus.publish)
        source = (await controller.where()).host
        assert source is not None, "the guest must run on exactly one host"
        dest = controller.other(source)
        source_log = await self._log_size(source)
        parser = PingParser("storage")
        samples: list[Sample] = []

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                samples.extend(parser.feed(line))

        argv = ping_command(lab.guest.address, interval_s=0.01, duration_s=3600)
        ping = asyncio.ensure_future(
            self.hosts["storage"].run(
                argv, timeout=None, on_line=on_line, long_running=True, log_output=False
            )
        )
        await asyncio.sleep(1.0)
        first_event = len(self.events)
        started, began = time.monotonic(), time.time()
        migration = asyncio.ensure_future(controller.migrate(dest))
        done, _ = await asyncio.wait({migration}, timeout=limit_s)
        if not done:
            await controller.cancel_migration()
        outcome = await migration
        wall, ended = time.monotonic() - started, time.time()
        await asyncio.sleep(1.5)  # the ping runs on past the switch-over
        ping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ping
        samples += parser.finish()

        events = self.events[first_event:]
        progress = [e for e in events if isinstance(e, MigrationProgress)]
        gaps = [g for g in unreachable_gaps(samples) if g.duration_s is not None]
        replies = sorted(s.t for s in samples if s.values.get("rtt_ms") is not None)
        throttles = [e.cpu_throttle_percentage for e in progress if e.cpu_throttle_percentage]
        rates = [e.mbps for e in progress if e.mbps]
        oops = await (self._oops(dest, 0) if outcome.ok else self._oops(source, source_log))
        return Row(
            label=label,
            source=source,
            dest=dest,
            outcome=outcome,
            wall_s=wall,
            unreachable_s=max((g.duration_s or 0.0 for g in gaps), default=0.0),
            lost=sum(g.lost_count for g in gaps),
            longest_silence_s=max((b - a for a, b in itertools.pairwise(replies)), default=0.0),
            max_throttle=max(throttles, default=None),
            mbps=statistics.median(rates) if rates else None,
            oops=oops,
            notes=[e.text for e in events if isinstance(e, Note)],
            dirty_rate=(self._load_rate(began - 10, began), self._load_rate(began, ended)),
        )


def with_policy(lab: LabConfig, policy: str) -> LabConfig:
    hypervisor = lab.hypervisor.model_copy(update={"convergence": policy})
    return lab.model_copy(update={"hypervisor": hypervisor})


HEADER = (
    f"{'run':<27} {'move':<12} {'total s':>7} {'down ms':>7} {'unr ms':>7} {'lost':>5} "
    f"{'sil ms':>7} {'MiB sent':>8} {'passes':>6} {'Mbit/s':>6} {'thr':>4} result"
)


def show(row: Row) -> None:
    o = row.outcome
    total = f"{o.total_time_ms / 1000:7.2f}" if o.total_time_ms is not None else "      -"
    down = f"{o.downtime_ms:7.0f}" if o.downtime_ms is not None else "      -"
    sent = f"{o.transferred_bytes / 2**20:8.1f}" if o.transferred_bytes else "       -"
    unreach = f"{row.unreachable_s * 1000:7.0f}" if row.unreachable_s is not None else "      -"
    throttle = f"{row.max_throttle:3.0f}%" if row.max_throttle else "   -"
    mbps = f"{row.mbps:6.1f}" if row.mbps else "     -"
    state = "ok" if o.ok else f"not migrated ({o.error}) after {row.wall_s:.0f} s"
    print(
        f"{row.label:<27} {row.source}->{row.dest} {total} {down} {unreach} {row.lost:5d} "
        f"{row.longest_silence_s * 1000:7.0f} {sent} {o.iterations or 0:6d} {mbps} {throttle} "
        f"{state}"
    )
    before, during = row.dirty_rate
    if before is not None:
        during_text = f"{during:.0f} MiB/s" if during is not None else "no round finished"
        print(f"{'':<27}   dirtier: {before:.0f} MiB/s before, {during_text} during")
    for note in row.notes:
        if not note.startswith("migrating "):
            print(f"{'':<27}   note: {note}")
    if row.oops:
        print(f"{'':<27}   GUEST KERNEL OOPS afterwards: {row.oops}")


async def bench(lab: LabConfig, args: argparse.Namespace) -> None:
    memory_mib, cap = lab.guest.memory_mb, lab.migrate_bandwidth_mbit
    cap_bytes_s = cap * 1e6 / 8
    print(
        f"guest {memory_mib} MB, {lab.guest.vcpus} vCPU (TCG); migration cap {cap} Mbit/s on "
        f"{lab.lab.link_mbit} Mbit/s links; memory / cap = {memory_mib * 2**20 / cap_bytes_s:.1f} s"
    )
    b = Bench(lab)
    await b.open()
    rows: list[Row] = []
    size = args.dirty_mib
    loaded = [("zeros", lab.hypervisor.convergence)] + [("dirtier", p) for p in args.policies]
    try:
        await b.fresh_guest("host1")
        print(HEADER)
        for n in range(1, args.repeat + 1):
            rows.append(await b.migrate(f"idle #{n}", lab, limit_s=args.limit_s))
            show(rows[-1])
        for what, policy in loaded:
            await b.fresh_guest("host1")
            if what == "zeros":
                path = "/dev/shm/miglab-zeros"
                await b.start_load(
                    ["sh", "-c", ZEROS_SCRIPT, "miglab-zeros", path, str(size)], what
                )
            else:
                await b.start_load(dirtier_command(size), what)
            label = f"{what} {size} MiB, {policy}"
            row = await b.migrate(label, with_policy(lab, policy), limit_s=args.limit_s)
            rows.append(row)
            show(row)
    finally:
        await b.close()

    idle = [r for r in rows if r.label.startswith("idle") and r.outcome.ok]
    if idle:
        total = statistics.median((r.outcome.total_time_ms or 0) / 1000 for r in idle)
        sent = statistics.median((r.outcome.transferred_bytes or 0) for r in idle)
        down = statistics.median((r.outcome.downtime_ms or 0) for r in idle)
        unreachable = statistics.median((r.unreachable_s or 0) * 1000 for r in idle)
        print(
            f"\nidle, median of {len(idle)}: total-time {total:.2f} s, downtime {down:.0f} ms, "
            f"unreachable {unreachable:.0f} ms; {sent / 2**20:.1f} MiB sent of {memory_mib} MiB; "
            f"sent / cap = {sent / cap_bytes_s:.1f} s; memory / cap = "
            f"{memory_mib * 2**20 / cap_bytes_s:.1f} s"
        )


def sandbox_dir() -> Path:
    return default_cache_dir().parent / "sandbox-bench"


async def main(args: argparse.Namespace) -> None:
    if args.lab is not None:
        await bench(load_lab(args.lab), args)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root (it brings up a sandbox), or --lab of a sandbox that is up")
    sandbox = Sandbox(sandbox_dir(), progress=lambda line: print(f"  {line}"))
    state = await sandbox.up(link_mbit=100, guest_mb=256)
    try:
        assert state.lab_file is not None
        await bench(load_lab(state.lab_file), args)
    finally:
        await sandbox.down()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lab", help="a sandbox lab.toml that is up (default: bring one up)")
    parser.add_argument("--repeat", type=int, default=3, help="idle migrations (default 3)")
    parser.add_argument("--dirty-mib", type=int, default=96, help="dirtier size (default 96)")
    parser.add_argument(
        "--policies",
        type=lambda text: [p for p in text.split(",") if p],
        default=list(POLICIES),
        help=f"convergence policies to run the dirtier under (default {','.join(POLICIES)})",
    )
    parser.add_argument(
        "--limit-s", type=float, default=240, help="cancel a migration after this (default 240)"
    )
    args = parser.parse_args()
    unknown = set(args.policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}; known: {', '.join(POLICIES)}")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
