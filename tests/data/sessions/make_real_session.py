"""Record a session log from real probes on this machine, around a synthetic migration.

Run as root from the project root (``unshare -n`` needs it)::

    .venv/bin/python -m tests.data.sessions.make_real_session tests/data/sessions/NAME.jsonl

Real: ``ping -D -O -n -i 0.05`` of 127.0.0.1 inside a private network namespace
(``unshare -n``: its own loopback, so nothing outside is touched), and
``sysbench cpu --threads=2`` on this machine, both read by the real parsers of
backend/probes and written by the real SessionLogWriter. For 0.6 s during the
fake migration the namespace ignores echo requests (``icmp_echo_ignore_all``,
per namespace), so ping reports a real gap.

Synthetic: the phases, the repetition marker and the migration events (there is
no guest and no hypervisor here); the header says ``simulated: true``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from backend.events import (
    EventBus,
    MigrationFinished,
    MigrationProgress,
    Note,
    Phase,
    RepetitionStarted,
)
from backend.probes import new_parser, ping_command, sysbench_cpu_command
from backend.session import SessionLogWriter, make_header
from backend.transport.local import LocalRunner

# Seconds from the start of the run.
BASELINE_AT, MIGRATE_AT, FINISHED_AT, END_AT = 2.0, 6.0, 9.0, 14.0
BLACKOUT_AT, BLACKOUT_S = 8.2, 0.6
MIB = 2**20

# $1 seconds before the blackout, $2 its length, $3 seconds after it; then ping's argv.
PING_SCRIPT = """\
ip link set lo up || exit 2
before=$1 blackout=$2 after=$3
shift 3
"$@" &
pid=$!
sleep "$before"
sysctl -q -w net.ipv4.icmp_echo_ignore_all=1
sleep "$blackout"
sysctl -q -w net.ipv4.icmp_echo_ignore_all=0
sleep "$after"
kill -INT "$pid"
wait "$pid"
"""


async def probe(runner: LocalRunner, bus: EventBus, kind: str, argv: list[str]) -> None:
    parser = new_parser(kind, runner.name)

    def on_line(stream: str, line: str) -> None:
        if stream == "stdout":
            for sample in parser.feed(line):
                bus.publish(sample)

    result = await runner.run(argv, timeout=END_AT + 10, on_line=on_line, log_output=False,
                              long_running=True)  # fmt: skip
    for sample in parser.finish():
        bus.publish(sample)
    result.check()


async def migration(bus: EventBus, start: float) -> None:
    async def at(offset: float) -> None:
        await asyncio.sleep(max(0.0, start + offset - time.time()))

    await at(BASELINE_AT)
    bus.publish(Phase(name="baseline"))
    await at(MIGRATE_AT)
    bus.publish(Phase(name="migrating"))
    total = 256 * MIB
    steps = int((FINISHED_AT - MIGRATE_AT) / 0.5)
    for i in range(1, steps):
        await at(MIGRATE_AT + 0.5 * i)
        sent = min(total, i * 48 * MIB)
        bus.publish(
            MigrationProgress(
                domain="guest", source="host1", dest="host2", iteration=max(1, i - 3),
                transferred_bytes=sent, remaining_bytes=max(0, total - sent),
                total_bytes=total, mbps=768.0,
            )
        )  # fmt: skip
    await at(FINISHED_AT)
    bus.publish(
        MigrationFinished(
            domain="guest", source="host1", dest="host2", ok=True,
            total_time_ms=(FINISHED_AT - MIGRATE_AT) * 1000, downtime_ms=None,
            transferred_bytes=total + 40 * MIB, iterations=4,
        )
    )  # fmt: skip
    bus.publish(Phase(name="after"))


async def main(path: Path) -> None:
    bus = EventBus()
    header = make_header(
        lab={"lab": {"name": "loopback", "link_mbit": 1000}},
        lab_file=None,
        simulated=True,
        scenario="real-probes-loopback",
        hosts={},
    )
    writer = await SessionLogWriter.create(path, header, bus)
    console = LocalRunner("console", bus.publish)
    guest = LocalRunner("guest", bus.publish)
    bus.publish(Note(text="real ping and sysbench on one machine; the migration is synthetic"))
    start = time.time()
    bus.publish(RepetitionStarted(number=1, of=1))
    bus.publish(Phase(name="warmup"))
    ping = ping_command("127.0.0.1", interval_s=0.05)
    timing = [str(BLACKOUT_AT), str(BLACKOUT_S), str(END_AT - BLACKOUT_AT - BLACKOUT_S)]
    ping_argv = ["unshare", "-n", "sh", "-c", PING_SCRIPT, "ping-blackout", *timing, *ping]
    await asyncio.gather(
        probe(console, bus, "ping", ping_argv),
        probe(guest, bus, "sysbench-cpu", sysbench_cpu_command(threads=2, time_s=int(END_AT))),
        migration(bus, start),
    )
    await writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.data.sessions.make_real_session OUT.jsonl")
    asyncio.run(main(Path(sys.argv[1])))
