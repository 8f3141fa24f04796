"""``sysbench cpu|memory ... run`` (sysbench 1.0.20) in the simulated guest.

The rates come from the model's :class:`~backend.sim.workloads.SysbenchCpu` and
:class:`~backend.sim.workloads.SysbenchMemory`; the text is sysbench's, format string
for format string (``sysbench.c`` ``sb_report_intermediate`` / ``sb_report_cumulative``,
``sb_cpu.c``, ``sb_memory.c``; checked against ``tests/data/probes/sysbench-*``).
A ``--time=N`` run prints interim lines for seconds 1..N-1 (the last second is
usually not reported, as seen in the captures), then the totals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from backend.sim import workloads as wl
from backend.sim.commands.base import Invocation

BANNER = "sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)"
_SIZE = re.compile(r"(\d+)([KMGT]?)$")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class SysbenchExit(Exception):
    """sysbench gives up (exit 1): what it prints, and whether its banner came first."""

    def __init__(self, *, out: str = "", err: str = "", after_banner: bool = True) -> None:
        super().__init__(err or out)
        self.out, self.err, self.after_banner = out, err, after_banner


@dataclass
class Options:
    test: str = ""
    command: str = ""
    threads: int = 1
    time_s: int = 10
    report_interval: int = 0
    max_prime: int = 10000
    block_size: int = 1 << 10
    total_size: int = 100 << 30
    oper: str = "write"
    percentile: int = 95
    before_banner: tuple[str, ...] = ()
    """Lines printed on stdout before the banner (deprecation warnings)."""
    warnings: tuple[str, ...] = ()
    """Lines printed on stderr (deprecation warnings)."""
    late: SysbenchExit | None = None
    """A bad test option or an unknown one: reported once the test is loaded."""


_GENERAL = {"threads", "num-threads", "time", "max-time", "report-interval", "percentile",
            "events", "rand-type"}  # fmt: skip
"""sysbench's own options: a bad value is refused before the banner."""


def parse(argv: list[str]) -> Options:
    """sysbench 1.0.20's command line, as the real one here reads and refuses it."""
    opts = Options()
    before: list[str] = []
    warnings: list[str] = []
    positional: list[str] = []
    for arg in argv[1:]:
        if not arg.startswith("--"):
            positional.append(arg)
            continue
        key, _, value = arg[2:].partition("=")
        if key == "test":
            warnings.append(
                "WARNING: the --test option is deprecated. You can pass a script "
                "name or path on the command line without any options."
            )
            positional.insert(0, value)
        elif key in ("threads", "num-threads"):  # --num-threads: no warning in 1.0.20
            opts.threads = _general(key, value)
            if opts.threads == 0:
                raise SysbenchExit(
                    out="FATAL: Invalid value for --threads: 0.\n\n", after_banner=False
                )
        elif key in ("time", "max-time"):
            if key == "max-time":
                before.append("WARNING: --max-time is deprecated, use --time instead")
            opts.time_s = _general(key, value)
        elif key == "report-interval":
            opts.report_interval = _general(key, value)
        elif key == "percentile":
            opts.percentile = _general(key, value)
        elif key in ("events", "rand-type"):
            continue
        elif key == "cpu-max-prime":
            if value.isdigit():
                opts.max_prime = int(value)
            else:  # the cpu test is Lua: its options' words
                _late(opts, err=f"Invalid value for the 'cpu_max_prime' option: '{value}'\n")
        elif key in ("memory-block-size", "memory-total-size"):
            size = _size(value)
            if key == "memory-total-size":
                opts.total_size = size or 0  # unreadable: 0, no limit (sysbench says 0MiB)
            elif size is None:  # the memory test is C: log_text(LOG_FATAL, ...) on stdout
                _late(opts, out=f"FATAL: Invalid value for {key}: {value}\n")
            else:
                opts.block_size = size
        elif key == "memory-oper":
            if value not in ("read", "write", "none"):
                _late(opts, out=f"FATAL: Invalid value for memory-oper: {value}\n")
            opts.oper = value
        elif key in ("memory-access-mode", "memory-scope"):
            continue
        else:
            _late(opts, err=f"invalid option: {arg}\n")
    if positional:
        opts.test = positional[0]
    if len(positional) > 1:
        opts.command = positional[1]
    opts.before_banner = tuple(before)
    opts.warnings = tuple(warnings)
    return opts


def _late(opts: Options, *, out: str = "", err: str = "") -> None:
    if opts.late is None:
        opts.late = SysbenchExit(out=out, err=err)


def _general(key: str, value: str) -> int:
    if not value.isdigit():
        name = {"num-threads": "threads", "max-time": "time"}.get(key, key).replace("-", "_")
        raise SysbenchExit(
            err=f"Invalid value for the '{name}' option: '{value}'\n", after_banner=False
        )
    return int(value)


def _size(value: str) -> int | None:
    m = _SIZE.match(value.upper())
    return int(m[1]) * _UNITS[m[2]] if m else None


# -- the text ------------------------------------------------------------------------------


def header(opts: Options) -> list[str]:
    lines = [BANNER, "", "Running the test with following options:"]
    lines.append(f"Number of threads: {opts.threads}")
    if opts.report_interval:
        lines.append(f"Report intermediate results every {opts.report_interval} second(s)")
    lines += ["Initializing random number generator from current time", "", ""]
    if opts.test == "cpu":
        lines += [f"Prime numbers limit: {opts.max_prime}", ""]
    else:
        lines += [
            "Running memory speed test with the following options:",
            f"  block size: {opts.block_size // 1024}KiB",
            f"  total size: {opts.total_size // (1 << 20)}MiB",
            f"  operation: {opts.oper}",
            "  scope: global",
            "",
        ]
    return [*lines, "Initializing worker threads...", "", "Threads started!", ""]


def cpu_interval(second: int, threads: int, eps: float, percentile: int, lat_ms: float) -> str:
    return f"[ {second}s ] thds: {threads} eps: {eps:4.2f} lat (ms,{percentile}%): {lat_ms:4.2f}"


def memory_interval(second: int, mib_per_s: float) -> str:
    return f"[ {second}s ] {mib_per_s:4.2f} MiB/sec"


@dataclass
class Totals:
    """What sysbench's end-of-run report says."""

    time_s: float
    events: int
    lat_min: float
    lat_avg: float
    lat_max: float
    lat_pct: float
    percentile: int
    events_stddev: float
    exec_avg: float
    exec_stddev: float
    threads: int
    lat_sum: float | None = None
    """Sum of all events' latencies; by default ``lat_avg * events``."""


def general(totals: Totals) -> list[str]:
    lat_sum = totals.lat_avg * totals.events if totals.lat_sum is None else totals.lat_sum
    pct = (
        f"         {totals.percentile}th percentile: {totals.lat_pct:27.2f}"
        if totals.percentile > 0
        else "         percentile stats:               disabled"
    )
    return [
        "General statistics:",
        f"    total time:                          {totals.time_s:.4f}s",
        f"    total number of events:              {totals.events}",
        "",
        "Latency (ms):",
        f"         min: {totals.lat_min:39.2f}",
        f"         avg: {totals.lat_avg:39.2f}",
        f"         max: {totals.lat_max:39.2f}",
        pct,
        f"         sum: {lat_sum:39.2f}",
        "",
        "Threads fairness:",
        f"    events (avg/stddev):           {totals.events / totals.threads:.4f}/"
        f"{totals.events_stddev:3.2f}",
        f"    execution time (avg/stddev):   {totals.exec_avg:.4f}/{totals.exec_stddev:3.2f}",
        "",
    ]


def cpu_summary(totals: Totals) -> list[str]:
    eps = totals.events / totals.time_s if totals.time_s > 0 else 0.0
    return ["CPU speed:", f"    events per second: {eps:8.2f}", "", *general(totals)]


def memory_summary(totals: Totals, mib: float) -> list[str]:
    rate = totals.events / totals.time_s if totals.time_s > 0 else 0.0
    mib_s = mib / totals.time_s if totals.time_s > 0 else 0.0
    return [
        f"Total operations: {totals.events} ({rate:8.2f} per second)",
        "",
        f"{mib:4.2f} MiB transferred ({mib_s:4.2f} MiB/sec)",
        "",
        "",
        *general(totals),
    ]


# -- the program ---------------------------------------------------------------------------


async def sysbench(inv: Invocation) -> int:
    try:
        opts = parse(inv.argv)
    except SysbenchExit as exc:  # a bad value of sysbench's own options: no banner
        await inv.out(exc.out)
        await inv.err(exc.err)
        return 1
    for line in opts.before_banner:
        await inv.out(line + "\n")
    for warning in opts.warnings:
        await inv.err(warning + "\n")
    await inv.out(f"{BANNER}\n\n")
    if not opts.test:
        return 0  # it runs a script from standard input, which is empty here
    if opts.test not in ("cpu", "memory"):
        await inv.out(
            f"FATAL: Cannot find benchmark '{opts.test}': no such built-in test, file or module\n"
        )
        return 1
    if opts.late is not None:
        await inv.out(opts.late.out)
        await inv.err(opts.late.err)
        return 1
    if not opts.command:
        await inv.err(
            f"The '{opts.test}' test requires a command argument. See 'sysbench {opts.test} help'\n"
        )
        return 1
    if opts.command != "run":
        await inv.err(f"'{opts.test}' test does not implement the '{opts.command}' command.\n")
        return 1
    for line in header(opts)[2:]:  # the banner and its empty line are out already
        await inv.out(line + "\n")
    if opts.test == "cpu":
        return await _run_cpu(inv, opts)
    return await _run_memory(inv, opts)


async def _run_cpu(inv: Invocation, opts: Options) -> int:
    model, runtime = inv.model, inv.runtime
    w = await inv.start(wl.SysbenchCpu, threads=opts.threads, max_prime=opts.max_prime)
    assert isinstance(w, wl.SysbenchCpu)
    start = runtime.now()
    rng = model.query_rng
    lat_max = 0.0
    second, last = 0, 0.0
    try:
        while opts.time_s == 0 or second < opts.time_s:
            second += 1
            await runtime.until(start + second)
            now = w.history[second - 1]
            eps, last = now - last, now
            if (
                opts.report_interval
                and second % opts.report_interval == 0
                and (second < opts.time_s or opts.time_s == 0)
            ):
                lat = _cpu_latency_ms(opts.threads, eps) * rng.uniform(1.05, 1.25)
                lat_max = max(lat_max, lat * rng.uniform(2, 6))
                await inv.out(cpu_interval(second, opts.threads, eps, opts.percentile, lat) + "\n")
        events = int(last)
    finally:
        model.stop(w)
    elapsed = float(second)  # sysbench's own clock: the seconds it counted
    avg = _cpu_latency_ms(opts.threads, events / elapsed if elapsed else 0.0)
    totals = Totals(
        time_s=elapsed + 0.0003,
        events=events,
        lat_min=1000.0 / wl.SYSBENCH_EPS_PER_VCPU * (opts.max_prime / 1000) ** 1.5,
        lat_avg=avg,
        lat_max=max(lat_max, avg * 3),
        lat_pct=avg * 1.2,
        percentile=opts.percentile,
        events_stddev=events / opts.threads * 0.02,
        exec_avg=elapsed * 0.99,
        exec_stddev=0.01,
        threads=opts.threads,
        lat_sum=opts.threads * elapsed * 990,  # every thread busy 99 % of the run, in ms
    )
    for line in cpu_summary(totals):
        await inv.out(line + "\n")
    return 0


def _cpu_latency_ms(threads: int, eps: float) -> float:
    """Every thread finishes one event per ``threads / eps`` seconds."""
    return threads / eps * 1000 if eps > 0 else 0.0


async def _run_memory(inv: Invocation, opts: Options) -> int:
    model, runtime = inv.model, inv.runtime
    block_kib = max(1, opts.block_size // 1024)
    w = await inv.start(wl.SysbenchMemory, threads=opts.threads, block_kib=block_kib)
    assert isinstance(w, wl.SysbenchMemory)
    start = runtime.now()
    total_mib = opts.total_size / (1 << 20) if opts.total_size else math.inf  # 0: no limit
    second, last = 0, 0.0
    try:
        while opts.time_s == 0 or second < opts.time_s:
            second += 1
            await runtime.until(start + second)
            now = w.history[second - 1]
            rate, last = now - last, now
            if now >= total_mib:
                break
            if (
                opts.report_interval
                and second % opts.report_interval == 0
                and (second < opts.time_s or opts.time_s == 0)
            ):
                await inv.out(memory_interval(second, rate) + "\n")
        mib = min(last, total_mib)
    finally:
        model.stop(w)
    elapsed = float(second)  # sysbench's own clock: the seconds it counted
    events = int(mib * 1024 / block_kib)
    per_event = elapsed * opts.threads / events * 1000 if events else 0.0
    totals = Totals(
        time_s=elapsed + 0.0001,
        events=events,
        lat_min=0.0,
        lat_avg=per_event,
        lat_max=max(per_event * 50, 0.5),
        lat_pct=per_event * 1.1,
        percentile=opts.percentile,
        events_stddev=math.sqrt(max(events, 1)),
        exec_avg=elapsed * 0.98,
        exec_stddev=0.0,
        threads=opts.threads,
    )
    for line in memory_summary(totals, mib):
        await inv.out(line + "\n")
    return 0
