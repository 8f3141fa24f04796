"""``ping`` (iputils 20221126) on simulated time: ``ping -D -O -n -i I -W S [-c N] [-w D] ADDR``.

Each probe goes out at its moment on the simulated clock and is answered (or not) by the
model: the guest does not answer while it is stopped for a migration's last round or
is down; round trips grow with the queue a migration keeps on the links it crosses.
Lines are iputils' formats (``tests/data/probes/ping-*``): ``-D`` timestamps are the
simulated wall clock, so they agree across the simulated hosts; ``-O`` reports a probe
unanswered when the next one is sent; the statistics end the run.
"""

from __future__ import annotations

import math

from backend.sim.commands.base import Invocation, UsageError, option_value
from backend.sim.world import Node

TTL = 64
SEND_OVERHEAD_S = 0.004
"""iputils sends every ``interval`` plus a little: 204 ms apart at ``-i 0.2`` (captures)."""
LINGER_S = 10.0
"""How long ``ping -c N`` waits for the last replies when no ``-W`` is given."""


class PingOptions:
    def __init__(self) -> None:
        self.timestamps = False
        self.report_outstanding = False
        self.quiet = False
        self.interval = 1.0
        self.timeout: float | None = None
        self.count: int | None = None
        self.deadline: float | None = None
        self.target = ""


def parse(argv: list[str]) -> PingOptions:
    opts = PingOptions()
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            if opts.target:
                raise UsageError(f"ping: {arg}: extra operand")  # not iputils' wording
            opts.target = arg
            i += 1
            continue
        flag = arg[:2]
        if flag in ("-i", "-W", "-c", "-w"):
            value, i = option_value(argv, i, flag)
            try:
                number = float(value)
            except ValueError:
                raise UsageError(f"ping: invalid argument: '{value}'") from None
            if flag == "-i":
                opts.interval = number
            elif flag == "-W":
                opts.timeout = number
            elif flag == "-c":
                opts.count = int(number)
            else:
                opts.deadline = number
            continue
        for letter in arg[1:]:
            if letter == "D":
                opts.timestamps = True
            elif letter == "O":
                opts.report_outstanding = True
            elif letter == "q":
                opts.quiet = True
            elif letter not in "n46vA":
                raise UsageError(f"ping: invalid option -- '{letter}'")
        i += 1
    if not opts.target:
        raise UsageError("ping: usage error: Destination address required")
    return opts


def format_rtt(us: int) -> str:
    """iputils' ``time=`` of a round trip in whole microseconds (ping_common.c)."""
    if us >= 100000 - 50:
        return f"{(us + 500) // 1000}"
    if us >= 10000 - 5:
        return f"{(us + 50) // 1000}.{((us + 50) % 1000) // 100:01d}"
    if us >= 1000:
        return f"{(us + 5) // 1000}.{((us + 5) % 1000) // 10:02d}"
    return f"{us // 1000}.{us % 1000:03d}"


def _ms(us: int) -> str:
    return f"{us // 1000}.{us % 1000:03d}"


def stamp(wall: float | None) -> str:
    """``-D``'s ``[seconds.micros] `` prefix (nothing without ``-D``)."""
    return "" if wall is None else f"[{wall:.6f}] "


def reply_line(wall: float | None, source: str, seq: int, rtt_us: int) -> str:
    reply = f"64 bytes from {source}: icmp_seq={seq % 65536} ttl={TTL}"
    return f"{stamp(wall)}{reply} time={format_rtt(rtt_us)} ms"


def no_answer_line(wall: float | None, seq: int) -> str:
    return f"{stamp(wall)}no answer yet for icmp_seq={seq % 65536}"


def summary_lines(target: str, sent: int, rtts_us: list[int], span_ms: int) -> list[str]:
    """The statistics block: totals, then min/avg/max/mdev (integer microseconds, as
    iputils computes them) when there were replies."""
    received = len(rtts_us)
    loss = (sent - received) * 100.0 / sent if sent else 0.0
    lines = [
        "",
        f"--- {target} ping statistics ---",
        f"{sent} packets transmitted, {received} received, {loss:g}% packet loss, time {span_ms}ms",
    ]
    if rtts_us:
        total, squares = sum(rtts_us), sum(r * r for r in rtts_us)
        avg = total // received
        # iputils' order of operations (finish() in ping_common.c), rounding included.
        mdev = math.isqrt(max(0, (squares - total * total // received) // received))
        numbers = "/".join(_ms(x) for x in (min(rtts_us), avg, max(rtts_us), mdev))
        lines.append(f"rtt min/avg/max/mdev = {numbers} ms")
    return lines


async def ping(inv: Invocation) -> int:
    try:
        opts = parse(inv.argv)
    except UsageError as exc:
        await inv.err(f"{exc}\n")
        return 2
    world = inv.world
    dest = world.resolve(opts.target, inv.node)
    target_is_guest = dest is not None and dest.role == "guest"
    if dest is None and not _looks_like_address(opts.target):
        await inv.err(f"ping: {opts.target}: Name or service not known\n")
        return 2
    numeric = _looks_like_address(opts.target)
    shown = opts.target if numeric or dest is None else dest.address
    await inv.out(f"PING {opts.target} ({shown}) 56(84) bytes of data.\n")
    return await _probe(inv, opts, dest, target_is_guest, shown)


def _looks_like_address(text: str) -> bool:
    parts = text.split(".")
    return (len(parts) == 4 and all(p.isdigit() for p in parts)) or ":" in text


async def _probe(
    inv: Invocation, opts: PingOptions, dest: Node | None, to_guest: bool, shown: str
) -> int:
    runtime, model = inv.runtime, inv.model
    start = runtime.now()

    def wall(t: float) -> float | None:
        return runtime.wall(t) if opts.timestamps else None

    rtts: list[int] = []  # microseconds, as ping keeps them
    sent = 0
    last_sent_at = start
    unanswered: int | None = None
    end = start + opts.deadline if opts.deadline is not None else math.inf
    while True:
        at = start + sent * (opts.interval + SEND_OVERHEAD_S)
        if at >= end or (opts.count is not None and sent >= opts.count):
            break
        await runtime.until(at)
        if unanswered is not None and opts.report_outstanding and not opts.quiet:
            await inv.out(no_answer_line(wall(at), unanswered) + "\n")
        sent += 1
        last_sent_at = at
        seq = sent
        if dest is None:
            rtt = None
        elif dest is inv.node:
            rtt = model.echo_rtt_ms(inv.node.name, inv.node.name, at)  # its own loopback
        else:
            here = None if inv.node.role == "guest" else inv.node.name
            rtt = model.echo_rtt_ms(here, None if to_guest else dest.name, at)
        if rtt is None:
            unanswered = seq
            continue
        unanswered = None
        rtt_us = max(1, int(rtt * 1000))
        rtts.append(rtt_us)
        if not opts.quiet:
            await inv.out(reply_line(wall(at + rtt / 1000), shown, seq, rtt_us) + "\n")
    if unanswered is not None and opts.count is not None and math.isinf(end):
        # -c N: wait for the last reply as long as -W (or ping's linger) allows.
        await runtime.until(last_sent_at + (opts.timeout or LINGER_S))
    elif not math.isinf(end):
        await runtime.until(end)
    span_ms = round((last_sent_at - start) * 1000)
    for line in summary_lines(opts.target, sent, rtts, span_ms):
        await inv.out(line + "\n")
    return 0 if rtts else 1
