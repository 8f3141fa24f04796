"""A realistic session for the console's tests, built from real formats and captures.

The session is what `migrate-ping` on the sandbox lab (QEMU + tgt) produces: hosts
connect, storage is prepared (tgtadm, iscsiadm), the guest boots on qemu1, ping and
sysbench run in it, it migrates to qemu2 and the run ends. Nothing here invents a
format: ping and sysbench output lines are written exactly as iputils and sysbench
1.0.20 print them (TOOL-FORMATS.md) and go through the project's real parsers; the
migration progress is QEMU's own `query-migrate` replies from the recorded QMP
session in tests/data/qmp/source.jsonl; command stderr is copied from captures.

Everything is deterministic (fixed times), so snapshots of a replay are stable.
Each part is a separate function so a scripted backend can publish the same events
action by action.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

from backend.config import LabConfig, parse_lab
from backend.events import (
    CommandFinished,
    CommandOutput,
    CommandStarted,
    DomainState,
    Event,
    HostState,
    InitiatorSession,
    MigrationFinished,
    MigrationProgress,
    Note,
    Phase,
    StorageExported,
    UnknownEvent,
)
from backend.probes.ping import PingParser
from backend.probes.sysbench import SysbenchParser
from backend.session import SessionLogWriter, make_header

DATA = Path(__file__).resolve().parents[1] / "data"
T0 = 1795771500.0
"""The session's start (a fixed wall-clock time, as in the captures)."""

LAB_TOML = """\
[lab]
name = "sandbox"
link_mbit = 100

[hosts.storage]
address = "198.18.0.1"
user = "root"

[hosts.qemu1]
address = "198.18.0.2"
user = "root"

[hosts.qemu2]
address = "198.18.0.3"
user = "root"

[storage]
host = "storage"
driver = "tgt"
iqn = "iqn.2024-01.lab.storage:disk1"
device = "/srv/lab/disk.img"
portal = "198.18.0.1:3260"

[hypervisor]
driver = "qemu"
hosts = ["qemu1", "qemu2"]

[guest]
name = "guest"
address = "198.18.0.50"
user = "root"
vcpus = 1
memory_mb = 256

[guest.qemu]
kernel = "/srv/lab/vmlinuz"
initrd = "/srv/lab/initrd.img"
tap = "tap0"
"""

IQN = "iqn.2024-01.lab.storage:disk1"
PORTAL = "198.18.0.1:3260"
HOSTS = ("storage", "qemu1", "qemu2")
MIGRATION_START = T0 + 40.0
"""When the migration starts, in the full session."""


def lab() -> LabConfig:
    return parse_lab(LAB_TOML, "sandbox.toml")


class Timeline:
    """Hands out command ids and builds command event groups at given times."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def command(
        self,
        t: float,
        host: str,
        argv: list[str],
        *,
        exit_status: int | None = 0,
        duration: float = 0.004,
        stdout: tuple[str, ...] = (),
        stderr: tuple[str, ...] = (),
        failure: str | None = None,
        channel: str = "pool",
    ) -> list[Event]:
        cmd_id = next(self._ids)
        events: list[Event] = [
            CommandStarted(t=t, host=host, cmd_id=cmd_id, argv=argv, channel=channel)  # type: ignore[arg-type]
        ]
        step = duration / (len(stdout) + len(stderr) + 1)
        for n, line in enumerate(stdout):
            events.append(
                CommandOutput(
                    t=t + step * (n + 1), host=host, cmd_id=cmd_id, stream="stdout", line=line
                )
            )
        for n, line in enumerate(stderr):
            events.append(
                CommandOutput(
                    t=t + step * (len(stdout) + n + 1),
                    host=host,
                    cmd_id=cmd_id,
                    stream="stderr",
                    line=line,
                )
            )
        events.append(
            CommandFinished(
                t=t + duration,
                host=host,
                cmd_id=cmd_id,
                argv=argv,
                exit_status=exit_status,
                duration_s=duration,
                failure=failure,
                stdout_tail=list(stdout[-20:]),
                stderr_tail=list(stderr[-20:]),
            )
        )
        return events


def connect(t: float = T0) -> list[Event]:
    events: list[Event] = [HostState(t=t, host=h, state="connecting") for h in HOSTS]
    for n, host in enumerate(HOSTS):
        events.append(
            HostState(t=t + 0.2 + n * 0.01, host=host, state="connected", rtt_ms=0.4 + n * 0.1)
        )
    for n, host in enumerate(HOSTS[1:]):
        # Not a core event kind yet: the console reads it by its fields.
        events.append(
            UnknownEvent(
                kind="host.resources",
                t=t + 0.5,
                host=host,
                free_memory_mb=2995 - 100 * n,
                total_memory_mb=4063,
            )
        )
    return events


def prepare(timeline: Timeline, t: float = T0 + 2.0) -> list[Event]:
    tgt = ["tgtadm", "--lld", "iscsi"]
    events: list[Event] = []
    events += timeline.command(t, "storage", [*tgt, "--op", "show", "--mode", "target"])
    events += timeline.command(
        t + 0.1, "storage", [*tgt, "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN]
    )
    events += timeline.command(
        t + 0.2,
        "storage",
        [
            *tgt,
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            "/srv/lab/disk.img",
        ],
    )
    events += timeline.command(
        t + 0.3, "storage", [*tgt, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"]
    )
    events.append(
        StorageExported(
            t=t + 0.31, host="storage", iqn=IQN, lun=1, backing="/srv/lab/disk.img", changed=True
        )
    )
    for n, host in enumerate(("qemu1", "qemu2")):
        at = t + 0.5 + n
        # The session list before login: real stderr and exit status of iscsiadm 2.1.8.
        events += timeline.command(
            at,
            host,
            ["iscsiadm", "-m", "session"],
            exit_status=21,
            stderr=("iscsiadm: No active sessions.",),
        )
        events += timeline.command(
            at + 0.1,
            host,
            ["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", PORTAL],
            stdout=(f"{PORTAL},1 {IQN}",),
            duration=0.05,
        )
        portal = PORTAL.replace(":", ",")
        events += timeline.command(
            at + 0.2,
            host,
            ["iscsiadm", "-m", "node", "-T", IQN, "-p", PORTAL, "--login"],
            stdout=(
                f"Logging in to [iface: default, target: {IQN}, portal: {portal}]",
                f"Login to [iface: default, target: {IQN}, portal: {portal}] successful.",
            ),
            duration=0.3,
        )
        events.append(
            InitiatorSession(t=at + 0.5, host=host, iqn=IQN, portal=PORTAL, state="logged-in")
        )
    return events


QEMU_ARGV = [
    "qemu-system-x86_64", "-name", "guest", "-accel", "tcg", "-m", "256", "-smp", "1",
    "-kernel", "/srv/lab/vmlinuz", "-initrd", "/srv/lab/initrd.img",
    "-drive", f"file=iscsi://198.18.0.1/{IQN}/1,format=raw,if=virtio,cache=none",
    "-qmp", "unix:/run/miglab/guest.qmp,server,nowait", "-daemonize",
]  # fmt: skip


def boot(timeline: Timeline, host: str = "qemu1", t: float = T0 + 5.0) -> list[Event]:
    events = timeline.command(t, host, QEMU_ARGV, duration=0.3, channel="exec")
    events.append(DomainState(t=t + 2.0, host=host, domain="guest", state="running"))
    return events


def ping_lines(start: float, count: int, interval: float, silent: tuple[float, float]) -> list[str]:
    """``ping -D -O -i INTERVAL`` output (iputils 20221126), no replies inside ``silent``."""
    lines = ["PING 198.18.0.50 (198.18.0.50) 56(84) bytes of data."]
    for seq in range(1, count + 1):
        sent = start + (seq - 1) * interval
        if silent[0] <= sent < silent[1]:
            # -O reports it when the next probe goes out.
            lines.append(f"[{sent + interval:.6f}] no answer yet for icmp_seq={seq}")
            continue
        rtt = 0.31 + 0.02 * ((seq * 7) % 5)
        if silent[1] <= sent < silent[1] + 1.0:
            rtt += 2.5  # the guest's ARP announcement settles the path again
        stamp = f"[{sent + rtt / 1000:.6f}]"
        lines.append(f"{stamp} 64 bytes from 198.18.0.50: icmp_seq={seq} ttl=64 time={rtt:.3f} ms")
    return lines


def sysbench_lines(seconds: int, slow: tuple[int, int]) -> list[str]:
    """``sysbench cpu --threads=1 --report-interval=1`` interval lines (1.0.20)."""
    lines = ["Threads started!", ""]
    for second in range(1, seconds + 1):
        eps = 9899.59 if not slow[0] <= second < slow[1] else 8312.27
        lines.append(f"[ {second}s ] thds: 1 eps: {eps:.2f} lat (ms,95%): 0.11")
    return lines


def _qmp_progress(start: float) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """The recorded `query-migrate` replies of the completed migration, and its final one."""
    replies: list[tuple[float, dict[str, Any]]] = []
    for raw in (DATA / "qmp" / "source.jsonl").read_text().splitlines():
        record = json.loads(raw)
        if record["dir"] != "s2c":
            continue
        message = json.loads(record["line"])
        reply = message.get("return")
        if (
            isinstance(reply, dict)
            and "ram" in reply
            and reply.get("status") in ("active", "completed")
        ):
            replies.append((record["t"], reply))
    # The capture holds a cancelled migration first; the completed one is the last run.
    final_index = max(i for i, (_, r) in enumerate(replies) if r["status"] == "completed")
    first = final_index
    while (
        first > 0
        and replies[first - 1][1]["status"] == "active"
        and (replies[first - 1][1]["ram"]["transferred"] <= replies[first][1]["ram"]["transferred"])
    ):
        first -= 1
    base = replies[first][0]
    active = [{"dt": t - base, **r} for t, r in replies[first:final_index]]
    final = replies[final_index][1]
    return active, final, replies[final_index][0] - base


def migrate_ping(timeline: Timeline, source: str = "qemu1", dest: str = "qemu2") -> list[Event]:
    """Probes start, the guest migrates at MIGRATION_START, the run ends after it."""
    events: list[Event] = [Phase(t=T0 + 8.0, name="warmup")]
    probe_start = T0 + 8.0
    active, final, took = _qmp_progress(MIGRATION_START)
    downtime_at = MIGRATION_START + took - 0.3
    ping = PingParser("storage")
    # 10 pings a second for 50 s; replies stop during the stop-and-copy.
    lines = ping_lines(probe_start, 500, 0.1, (downtime_at, downtime_at + 0.4))
    received = sum(1 for line in lines if " bytes from " in line)
    lines += [
        "",
        "--- 198.18.0.50 ping statistics ---",
        f"500 packets transmitted, {received} received, "
        f"{100 * (500 - received) / 500:g}% packet loss, time 49901ms",
        "rtt min/avg/max/mdev = 0.310/0.412/2.890/0.301 ms",
    ]
    for line in lines:
        events.extend(ping.feed(line))
    events.extend(ping.finish())
    clock_t = iter([probe_start])
    sysbench = SysbenchParser("guest", clock=lambda: next(clock_t, probe_start))
    for line in sysbench_lines(48, (32, 40)):
        events.extend(sysbench.feed(line))
    events.append(Phase(t=T0 + 20.0, name="baseline"))
    events.append(Phase(t=MIGRATION_START, name="migrating"))
    migrate_argv = ["qmp", "migrate", "uri=tcp:198.18.0.3:4444"]
    events += timeline.command(
        MIGRATION_START, source, migrate_argv, duration=0.002, channel="exec"
    )
    for reply in active:
        ram = reply["ram"]
        events.append(
            MigrationProgress(
                t=MIGRATION_START + reply["dt"],
                domain="guest",
                source=source,
                dest=dest,
                iteration=ram.get("dirty-sync-count"),
                transferred_bytes=ram.get("transferred"),
                remaining_bytes=ram.get("remaining"),
                total_bytes=ram.get("total"),
                mbps=ram.get("mbps"),
                expected_downtime_ms=reply.get("expected-downtime"),
            )
        )
    done = MIGRATION_START + took
    events.append(
        MigrationFinished(
            t=done,
            domain="guest",
            source=source,
            dest=dest,
            ok=True,
            total_time_ms=final.get("total-time"),
            downtime_ms=final.get("downtime"),
            transferred_bytes=final["ram"]["transferred"],
            iterations=final["ram"].get("dirty-sync-count"),
        )
    )
    events.append(DomainState(t=done + 0.1, host=dest, domain="guest", state="running"))
    events.append(Phase(t=done + 0.2, name="after"))
    events.append(Note(t=T0 + 58.5, text="migrate-ping finished: unreachable 0.4 s"))
    return sorted(events, key=lambda e: e.t)


def full_session() -> list[Event]:
    timeline = Timeline()
    events = connect() + prepare(timeline) + boot(timeline) + migrate_ping(timeline)
    return sorted(events, key=lambda e: e.t)


async def write_session(path: Path, events: list[Event] | None = None) -> Path:
    """Write the session as a real session log (the project's writer), header time T0."""
    config = lab()
    header = make_header(
        lab=config.model_dump(mode="json"), lab_file="sandbox.toml", scenario="migrate-ping"
    )
    header["t"] = T0
    writer = await SessionLogWriter.create(path, header)
    for event in events if events is not None else full_session():
        writer.write(event)
    await writer.close()
    return path


if __name__ == "__main__":  # write one to look at: python -m tests.tui.session_fixture OUT
    import sys

    asyncio.run(write_session(Path(sys.argv[1])))
