"""``dbench [-t SECONDS] [-c LOADFILE] [-D DIR] CLIENTS`` (dbench 4.0) in the simulated guest.

Throughput and worst latency per second come from the model's
:class:`~backend.sim.workloads.Dbench`: on the guest's iSCSI disk, unless ``-D`` names a
directory under :data:`LOCAL_DISK_DIR` (a file system on its host's own drive) or the
guest was put on a local disk (``SimulatedLab.switch_disk``): the study's analysis 1,
iSCSI against local. The lines are dbench 4.0's
(``dbench.c``; ``tests/data/probes/dbench-*``): warm-up for ``t/5`` seconds, then
``execute`` lines whose MB/sec is the average since the execute phase began, cleanup,
the operation table and the ``Throughput`` line.
"""

from __future__ import annotations

from backend.sim import workloads as wl
from backend.sim.commands.base import Invocation, UsageError, option_value

LOCAL_DISK_DIR = "/mnt/local"
"""In the simulated guest, a file system on its host's local disk; the rest is iSCSI."""
DEFAULT_LOADFILE = "/usr/share/dbench/client.txt"
LINES_PER_MB = 90.0
"""Loadfile lines a client gets through per MB moved (from the captures)."""

# The operation mix of a real run (tests/data/probes/dbench-t10-c2.txt): name, share of
# all operations, average and worst latency relative to the run's worst latency.
OPERATIONS: tuple[tuple[str, float, float, float], ...] = (
    ("NTCreateX", 0.17303, 0.0015, 0.366),
    ("Close", 0.12706, 0.0001, 0.128),
    ("Rename", 0.00733, 0.0025, 0.087),
    ("Unlink", 0.03496, 0.0068, 0.683),
    ("Deltree", 0.0000035, 0.156, 0.303),
    ("Mkdir", 0.0000018, 0.0004, 0.0004),
    ("Qpathinfo", 0.15678, 0.0006, 0.394),
    ("Qfileinfo", 0.02744, 0.0001, 0.0066),
    ("Qfsinfo", 0.02877, 0.0002, 0.130),
    ("Sfileinfo", 0.01408, 0.0006, 0.132),
    ("Find", 0.06062, 0.0020, 0.528),
    ("WriteX", 0.08607, 0.0011, 0.376),
    ("ReadX", 0.27117, 0.0003, 0.371),
    ("LockX", 0.00056, 0.0003, 0.0025),
    ("UnlockX", 0.00056, 0.0001, 0.0022),
    ("Flush", 0.01212, 0.0482, 1.0),
)
OPERATIONS_PER_LINE = 0.909


def parse(argv: list[str]) -> tuple[int, str, str, int]:
    """(time limit, loadfile, directory, clients)."""
    time_s, loadfile, directory, clients = 600, DEFAULT_LOADFILE, ".", None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-t"):
            value, i = option_value(argv, i, "-t")
            if not value.isdigit():
                raise UsageError(f"dbench: bad time limit '{value}'")
            time_s = int(value)
        elif arg.startswith("-c"):
            loadfile, i = option_value(argv, i, "-c")
        elif arg.startswith("-D"):
            directory, i = option_value(argv, i, "-D")
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"dbench: unknown option '{arg}'")
        else:
            if not arg.isdigit() or int(arg) < 1:
                raise UsageError(f"dbench: bad number of clients '{arg}'")
            clients = int(arg)
            i += 1
    if clients is None:
        raise UsageError("usage: dbench [OPTIONS] nprocs")
    return time_s, loadfile, directory, clients


def progress(clients: int, lines: int, mb_s: float, phase: str, sec: int, lat_ms: float) -> str:
    return (
        f"{clients:4d}  {lines:8d}  {mb_s:7.2f} MB/sec  {phase} {sec:3.0f} sec  "
        f"latency {lat_ms:.03f} ms"
    )


def cleanup(clients: int, sec: int) -> str:
    return f"{clients:4d}  cleanup {sec:3.0f} sec"


def operation_table(operations: int, max_latency_ms: float) -> list[str]:
    lines = [" Operation      Count    AvgLat    MaxLat", " " + "-" * 40]
    for name, share, avg, worst in OPERATIONS:
        count = round(operations * share)
        lines.append(
            f" {name:<9s} {count:10d} {avg * max_latency_ms:9.3f} {worst * max_latency_ms:9.3f}"
        )
    return lines


def throughput(mb_s: float, clients: int, max_latency_ms: float) -> str:
    return (
        f"Throughput {mb_s:g} MB/sec  {clients} clients  {clients} procs  "
        f"max_latency={max_latency_ms:.03f} ms"
    )


async def dbench(inv: Invocation) -> int:
    try:
        time_s, loadfile, directory, clients = parse(inv.argv)
    except UsageError as exc:
        await inv.err(f"{exc}\n")
        return 1
    warmup = time_s // 5
    out = inv.out
    await out("dbench version 4.00 - Copyright Andrew Tridgell 1999-2004\n\n")
    if not inv.node.is_file(loadfile):
        await out(f"Running for {time_s} seconds with load '{loadfile}' and minimum warmup ")
        await out(f"{warmup} secs\nfailed to open {loadfile}\n")
        return 1
    await out(
        f"Running for {time_s} seconds with load '{loadfile}' and minimum warmup {warmup} secs\n"
    )
    await out(f"0 of {clients} processes prepared for launch   0 sec\n")
    await out(f"{clients} of {clients} processes prepared for launch   0 sec\n")
    await out("releasing clients\n")
    if not inv.node.is_dir(directory):
        for n in range(clients):
            await out(
                f"[3] open {directory.rstrip('/')}/clients/client{n} failed for handle 16385 "
                "(No such file or directory)\n(4) ERROR: handle 16385 was not found\n"
            )
        await out("Child failed with status 1\n")
        return 1
    local = inv.model.guest_disk == "local" or (
        directory == LOCAL_DISK_DIR or directory.startswith(LOCAL_DISK_DIR + "/")
    )
    w = await inv.start(wl.Dbench, clients=clients, local=local)
    assert isinstance(w, wl.Dbench)
    try:
        return await _run(inv, w, time_s, warmup, clients)
    finally:
        inv.model.stop(w)


async def _run(inv: Invocation, w: wl.Dbench, time_s: int, warmup: int, clients: int) -> int:
    runtime = inv.runtime
    start = runtime.now()
    base_mb = 0.0
    worst = 0.0
    for second in range(1, warmup + time_s + 1):
        await runtime.until(start + second)
        _, mb, latency = w.seconds[second - 1]
        lines = int(LINES_PER_MB * mb / clients)
        if second < warmup:
            await inv.out(progress(clients, lines, mb / second, "warmup", second, latency) + "\n")
        elif second == warmup:
            base_mb = mb  # dbench starts counting afresh when the execute phase begins
        elif second < warmup + time_s:
            k = second - warmup
            worst = max(worst, latency)
            avg = (mb - base_mb) / k
            await inv.out(progress(clients, lines, avg, "execute", k, latency) + "\n")
        else:
            await inv.out(cleanup(clients, time_s) + "\n" + cleanup(0, time_s) + "\n\n")
            operations = int(LINES_PER_MB * mb * OPERATIONS_PER_LINE)
            for line in operation_table(operations, worst):
                await inv.out(line + "\n")
            result = (mb - base_mb) / time_s
            await inv.out("\n" + throughput(result, clients, worst) + "\n")
    return 0
