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
import re

from backend.sim.commands.base import Invocation, option_value
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


_USAGE = """
Usage
  ping [options] <destination>

Options:
  <destination>      dns name or ip address
  -a                 use audible ping
  -A                 use adaptive ping
  -B                 sticky source address
  -c <count>         stop after <count> replies
  -C                 call connect() syscall on socket creation
  -D                 print timestamps
  -d                 use SO_DEBUG socket option
  -e <identifier>    define identifier for ping session, default is random for
                     SOCK_RAW and kernel defined for SOCK_DGRAM
                     Imply using SOCK_RAW (for IPv4 only for identifier 0)
  -f                 flood ping
  -h                 print help and exit
  -I <interface>     either interface name or address
  -i <interval>      seconds between sending each packet
  -L                 suppress loopback of multicast packets
  -l <preload>       send <preload> number of packages while waiting replies
  -m <mark>          tag the packets going out
  -M <pmtud opt>     define mtu discovery, can be one of <do|dont|want>
  -n                 no dns name resolution
  -O                 report outstanding replies
  -p <pattern>       contents of padding byte
  -q                 quiet output
  -Q <tclass>        use quality of service <tclass> bits
  -s <size>          use <size> as number of data bytes to be sent
  -S <size>          use <size> as SO_SNDBUF socket option value
  -t <ttl>           define time to live
  -U                 print user-to-user latency
  -v                 verbose output
  -V                 print version and exit
  -w <deadline>      reply wait <deadline> in seconds
  -W <timeout>       time to wait for response

IPv4 options:
  -4                 use IPv4
  -b                 allow pinging broadcast
  -R                 record route
  -T <timestamp>     define timestamp, can be one of <tsonly|tsandaddr|tsprespec>

IPv6 options:
  -6                 use IPv6
  -F <flowlabel>     define flow label, default is random
  -N <nodeinfo opt>  use icmp6 node info query, try <help> as argument

For more details see ping(8).
"""
"""iputils 20221126's usage() (stderr, exit 2), as ``ping -Z`` prints it on this machine."""

_FLOAT_PREFIX = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class PingExit(Exception):
    """ping stops before it starts: what it printed on stderr, and its exit code."""

    def __init__(self, stderr: str, code: int) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.code = code


def _strtol(value: str, low: int, high: int) -> int:
    """iputils' strtol_or_err(optarg, "invalid argument", low, high): exit 1."""
    text = value.strip()
    if not re.fullmatch(r"[-+]?\d+", text):
        raise PingExit(f"ping: invalid argument: '{value}'\n", 1)
    number = int(text)
    if not low <= number <= high:
        raise PingExit(
            f"ping: invalid argument: '{value}': out of range: {low} <= value <= {high}\n", 1
        )
    return number


def _strtod(value: str, what: str, warnings: list[str]) -> float:
    """iputils' ping_strtod: garbage after the number is only warned about (for now)."""
    if not value:
        raise PingExit(f"ping: {what}: \n", 2)
    match = _FLOAT_PREFIX.match(value)
    number = float(match.group(0)) if match else 0.0
    rest = value[match.end() :] if match else value
    if rest:
        warnings += [
            f"ping: option argument contains garbage: {rest}",
            "ping: this will become fatal error in the future",
        ]
    if number < 0:
        raise PingExit(f"ping: {what}: {value}\n", 2)
    return number


def parse(argv: list[str], warnings: list[str] | None = None) -> PingOptions:
    """iputils 20221126's options, its words and exit codes for bad ones (:class:`PingExit`);
    ``warnings`` collects what it only warns about."""
    opts = PingOptions()
    warned: list[str] = [] if warnings is None else warnings
    operands: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            i += 1
            continue
        flag = arg[:2]
        if flag in ("-i", "-W", "-c", "-w"):
            if len(arg) == 2 and i + 1 >= len(argv):
                raise PingExit(f"ping: option requires an argument -- '{flag[1]}'\n{_USAGE}", 2)
            value, i = option_value(argv, i, flag)
            if flag == "-i":
                opts.interval = _strtod(value, "bad timing interval", warned)
            elif flag == "-W":
                opts.timeout = _strtod(value, "bad linger time", warned)
            elif flag == "-c":
                opts.count = _strtol(value, 1, LONG_MAX)
            else:
                opts.deadline = _strtol(value, 0, INT_MAX)
            continue
        for letter in arg[1:]:
            if letter == "D":
                opts.timestamps = True
            elif letter == "O":
                opts.report_outstanding = True
            elif letter == "q":
                opts.quiet = True
            elif letter not in "n46vA":
                raise PingExit(f"ping: invalid option -- '{letter}'\n{_USAGE}", 2)
        i += 1
    if not operands:
        raise PingExit("ping: usage error: Destination address required\n", 1)
    # More operands are IPv4 source-route hops; iputils pings the last one.
    opts.target = operands[-1]
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
    warnings: list[str] = []
    try:
        opts = parse(inv.argv, warnings)
    except PingExit as exc:
        await inv.err(exc.stderr)
        return exc.code
    for warning in warnings:
        await inv.err(warning + "\n")
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
