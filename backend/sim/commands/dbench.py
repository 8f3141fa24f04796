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

import re

from backend.sim import workloads as wl
from backend.sim.commands.base import Invocation, option_value

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


_USAGE = """Usage: [OPTION...]
  -t, --timelimit=integer           timelimit
  -c, --loadfile=filename           loadfile
  -D, --directory=STRING            working directory
  -T, --tcp-options=STRING          TCP socket options
  -R, --target-rate=DOUBLE          target throughput (MB/sec)
  -s, --sync                        use O_SYNC
  -S, --sync-dir                    sync directory changes
  -F, --fsync                       fsync on write
  -x, --xattr                       use xattrs
      --no-resolve                  disable name resolution simulation
      --clients-per-process=INT     number of clients per process
      --one-byte-write-fix          try to fix 1 byte writes
      --stat-check                  check for pointless calls with stat
      --fake-io                     fake up read/write calls
      --skip-cleanup                skip cleanup operations
      --per-client-results          show results per client

Help options:
  -?, --help                        Show this help message
      --usage                       Display brief usage message
"""
"""popt's help of dbench 4.0 (stdout), as ``dbench`` with no NPROCS prints it here."""

_VALUED = {"-t": "--timelimit", "-c": "--loadfile", "-D": "--directory", "-T": "--tcp-options",
           "-R": "--target-rate"}  # fmt: skip
_FLAGS = {"-s", "-S", "-F", "-x", "--sync", "--sync-dir", "--fsync", "--xattr", "--no-resolve",
          "--one-byte-write-fix", "--stat-check", "--fake-io", "--skip-cleanup",
          "--per-client-results"}  # fmt: skip


class DbenchExit(Exception):
    """dbench stops after its banner: what it prints and its exit code."""

    def __init__(self, code: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(stderr or stdout)
        self.code, self.stdout, self.stderr = code, stdout, stderr


def parse(argv: list[str]) -> tuple[int, str, str, int]:
    """(time limit, loadfile, directory, clients): dbench 4.0's popt options, its words
    for bad ones (:class:`DbenchExit`). NPROCS is read with atoi, as dbench does."""
    time_s, loadfile, directory = 600, DEFAULT_LOADFILE, "."
    operands: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        short = next((s for s, long in _VALUED.items() if name == long), None)
        if short is not None and inline:
            value, i = inline, i + 1
        elif short is not None:
            value, i = (argv[i + 1], i + 2) if i + 1 < len(argv) else ("", i + 1)
        elif arg[:2] in _VALUED and arg.startswith("-") and not arg.startswith("--"):
            short = arg[:2]
            value, i = option_value(argv, i, short)
        elif arg in _FLAGS or name == "--clients-per-process":
            i += 1
            continue
        elif arg.startswith("-") and arg != "-":
            raise DbenchExit(1, stderr=f"Invalid option {name}: unknown option\n")
        else:
            operands.append(arg)
            i += 1
            continue
        if short == "-t":
            if not value.strip().lstrip("+-").isdigit():
                raise DbenchExit(1, stderr=f"Invalid option {value}: invalid numeric value\n")
            time_s = int(value)
        elif short == "-c":
            loadfile = value
        elif short == "-D":
            directory = value
    if not operands:
        raise DbenchExit(1, stdout=f"You need to specify NPROCS\n{_USAGE}")
    digits = re.match(r"\s*[-+]?\d+", operands[0])
    return time_s, loadfile, directory, int(digits.group(0)) if digits else 0


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
    out = inv.out
    await out("dbench version 4.00 - Copyright Andrew Tridgell 1999-2004\n\n")
    try:
        time_s, loadfile, directory, clients = parse(inv.argv)
    except DbenchExit as exc:
        await out(exc.stdout)
        await inv.err(exc.stderr)
        return exc.code
    warmup = time_s // 5
    if not inv.node.is_file(loadfile):
        await out(f"Running for {time_s} seconds with load '{loadfile}' and minimum warmup ")
        await out(f"{warmup} secs\nfailed to open {loadfile}\n")
        return 1
    await out(
        f"Running for {time_s} seconds with load '{loadfile}' and minimum warmup {warmup} secs\n"
    )
    if clients <= 0:
        await inv.err(f"create {clients} procs?  you must be kidding.\n")
        await out(throughput(0, clients, 0.0) + "\n")
        return 0
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
