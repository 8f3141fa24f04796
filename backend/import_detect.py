"""Which tool wrote a capture, and in which of its formats: ``miglab import auto``.

The tool is told from the first lines of the file (:data:`HEAD_LINES`) by lines that
only that tool prints (:data:`SIGNS`); exactly one tool must have such a line. None
(the file is not the output of a tool import reads) or several (a transcript that
mixes tools) is a :class:`DetectError` naming what was found where: never a guess.

The format (which release or which options of the tool) is read from the first and the
last lines (:func:`describe`), for ``import auto`` and an explicit KIND alike. Nothing
here parses a value: each kind's own parser does that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from backend.drivers import ParseError
from backend.drivers.parse_xl import XlMigrateParser

HEAD_LINES = 200
"""Lines read to tell the tool (a ping of -O lines shows replies well within them)."""
HEAD_CHARS = 2**20
"""At most this much text is held to tell the tool, however long its lines."""
TAIL_LINES = 20
"""Lines kept from the end: summaries (ping's statistics, dbench's Throughput)."""

# Each line is matched with its whitespace collapsed (as pasted from a terminal).
_TS = r"(?:\[\d+\.\d+\] )?"
SIGNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "ping": (
        re.compile(_TS + r"\d+ bytes from \S.*: (?:icmp_seq|icmp_req|seq)=\d+ "),
        re.compile(r"PING \S+ ?\([^)]*\):? \d+(?:\(\d+\))? (?:data )?bytes"),
        re.compile(r"\d+ packets transmitted, \d+ (?:packets )?received"),
        re.compile(_TS + r"no answer yet for icmp_seq=\d+$"),
        re.compile(r"--- \S+ ping statistics ---$"),
    ),
    "sysbench": (
        re.compile(r"sysbench \d+\.\d+\S*(?::| \(using)"),
        re.compile(r"Doing (?:CPU performance benchmark|memory operations speed test)$"),
        re.compile(r"Threads started!$"),
        re.compile(r"\[ ?\d+s ?\] thds: \d+ eps: "),
        re.compile(r"Primer? numbers limit: \d+$"),
    ),
    "dbench": (
        re.compile(r"dbench version \d"),
        re.compile(r"\d+ \d+ [\d.]+ MB/sec (?:warmup|execute) \d+ sec"),
        re.compile(r"Throughput [\d.]+ MB/sec"),
        re.compile(r"\d+ cleanup \d+ sec$"),
    ),
    "build": (re.compile(r"miglab-build (?:start|exit=\d+|round=\d+)"),),
    "dirtier": (re.compile(r"miglab-dirtier (?:start|filled|round=\d+|done|error)"),),
    "xl": (
        re.compile(r"migration (?:target|sender): "),
        re.compile(r"Saving to migration stream "),
        re.compile(r"xc: (?:info|detail|error|warning): "),
        re.compile(r"libxl: (?:error|info|warning|debug): "),
    ),
    "qemu": (
        # QMP: a query-migrate answer (bare, a reply, or a miglab QMP capture record)
        re.compile(r'\{.*"status\\?": ?\\?"[a-z-]+\\?".*"(?:ram|total-time)\\?":'),
        re.compile(r'\{.*"(?:ram|total-time)\\?":.*"status\\?": ?\\?"[a-z-]+\\?"'),
        # HMP ``info migrate``: "Migration status:" (QEMU <= 10.0), "Status:" (10.1+)
        re.compile(r"(?:\(qemu\) )?Migration status: [a-z-]+"),
        re.compile(r"(?:\(qemu\) )?Time \(ms\): total=\d+, setup="),
        # a QMP transcript's greeting (bare or in a capture record)
        re.compile(r'.*\{\\?"QMP\\?": ?\{'),
    ),
}
"""Per import kind, lines only its tool prints."""

_NAMES = {"xl": "xl migrate", "qemu": "QEMU migration status"}


class DetectError(ValueError):
    """The tool cannot be told: the message says what was (not) found, and where."""


@dataclass(frozen=True)
class Head:
    """The first lines of a capture, read to tell its tool (see :func:`read_head`)."""

    lines: list[str]
    complete: bool
    """True when these are all the file's lines."""


def read_head(lines: Iterator[str]) -> Head:
    """Take the first lines of ``lines`` (at most :data:`HEAD_LINES`, :data:`HEAD_CHARS`);
    the caller goes on with ``itertools.chain(head.lines, lines)``."""
    head: list[str] = []
    size = 0
    for line in lines:
        head.append(line)
        size += len(line)
        if len(head) >= HEAD_LINES or size >= HEAD_CHARS:
            return Head(head, complete=False)
    return Head(head, complete=True)


def _collapsed(line: str) -> str:
    return " ".join(line.split())


def matches(lines: Iterable[str]) -> dict[str, int]:
    """Per kind, the line number (from 1) of the first line only its tool prints."""
    found: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        text = _collapsed(line)
        if not text:
            continue
        for kind, signs in SIGNS.items():
            if kind not in found and any(sign.match(text) for sign in signs):
                found[kind] = number
    return found


def detect(head: Sequence[str], *, complete: bool = False) -> str:
    """The import kind of a capture from its first lines (``complete``: all of them);
    :class:`DetectError` when no tool or more than one tool is recognised."""
    found = matches(head)
    if not found:
        lines = f"{'' if complete else 'first '}{len(head)} line{'s' * (len(head) != 1)}"
        raise DetectError(
            f"none of its {lines} is one that ping, sysbench, dbench, a build, "
            "the RAM dirtier, xl migrate or QEMU's migration status prints"
        )
    if len(found) > 1:
        which = ", ".join(
            f"{_NAMES.get(kind, kind)} (line {number})"
            for kind, number in sorted(found.items(), key=lambda item: item[1])
        )
        raise DetectError(f"lines of more than one tool: {which}")
    return next(iter(found))


# --------------------------------------------------------------------------- formats


def describe(kind: str, head: Sequence[str], tail: Sequence[str]) -> str:
    """The tool and the format the capture's first and last lines show, e.g.
    ``ping (BusyBox)`` or ``sysbench cpu (sysbench 0.4.12)``."""
    lines = [_collapsed(line) for line in (*head, *tail)]
    describer = _DESCRIBERS.get(kind)
    if describer is None:
        return kind
    return describer(kind, lines)


def _ping(_kind: str, lines: list[str]) -> str:
    replies = [line for line in lines if SIGNS["ping"][0].match(line)]
    busybox = any(
        re.search(r"\): \d+ data bytes$", line)
        or " packets received" in line
        or line.startswith("round-trip min/avg/max = ")
        for line in lines
    ) or any(re.search(r": seq=\d+ ", line) for line in replies)
    if busybox:
        return "ping (BusyBox: no timestamps)"
    family = "iputils"
    if any(": icmp_req=" in line for line in replies):
        family = "iputils of about 2010-2012, icmp_req="
    timed = any(re.match(r"\[\d+\.\d+\] ", line) for line in lines)
    stamps = "-D timestamps" if timed else "without -D: no timestamps"
    loss = ", -O" if any("no answer yet for icmp_seq=" in line for line in lines) else ""
    return f"ping ({family}; {stamps}{loss})"


def _sysbench(kind: str, lines: list[str]) -> str:
    test = kind.removeprefix("sysbench-") if kind != "sysbench" else _sysbench_test(lines)
    version = next(
        (m[1] for line in lines if (m := re.match(r"sysbench (\d+\.\d+(?:\.\d+)?)", line))),
        None,
    )
    if version == "0.4.12" and any(line == "General statistics:" for line in lines):
        version = "0.4.12, the 0.4 branch's later wording"
    stated = f"sysbench {version}" if version else "no version line"
    return f"sysbench {test} ({stated})" if test else f"sysbench ({stated})"


def _sysbench_test(lines: list[str]) -> str:
    text = "\n".join(lines)
    if any(word in text for word in ("Prime numbers limit", "CPU speed", "CPU performance")):
        return "cpu"
    if "Primer numbers limit" in text:
        return "cpu"
    if "memory" in text.lower() or "B/sec" in text or "Operations performed" in text:
        return "memory"
    return ""


def _dbench(_kind: str, lines: list[str]) -> str:
    version = next((m[1] for line in lines if (m := re.match(r"dbench version (\S+)", line))), None)
    parts = [f"dbench {version}" if version else "no version line"]
    throughput = next((line for line in lines if line.startswith("Throughput ")), "")
    parts += [flag for flag in ("sync open", "sync dirs") if f"({flag})" in throughput]
    return f"dbench ({', '.join(parts)})"


def _build(_kind: str, lines: list[str]) -> str:
    repeated = any(re.match(r"miglab-build round=\d+", line) for line in lines)
    quiet = any(re.match(r"(?:HOST)?(?:CC|CXX|AS)(?: \[M\])? \S", line) for line in lines)
    what = "kbuild quiet lines" if quiet else "compiler command lines"
    return f"build (miglab's build wrapper{', repeated builds' if repeated else ''}; {what})"


def _dirtier(_kind: str, _lines: list[str]) -> str:
    return "dirtier (miglab's RAM dirtier)"


def _xl(_kind: str, lines: list[str]) -> str:
    parser = XlMigrateParser()
    for line in lines:
        try:
            parser.feed(line)
        except ParseError:
            continue
    version = parser.stream_version
    stream = f"migration stream v{version}" if version is not None else "no stream header"
    return f"xl migrate ({stream})"


def _qemu(_kind: str, lines: list[str]) -> str:
    for line in lines:
        text = line.removeprefix("(qemu) ")
        if text.startswith("{"):
            capture = '"dir"' in text and '"line"' in text
            return "QEMU (QMP JSON" + (", miglab's QMP capture)" if capture else ")")
        if text.startswith("Migration status: "):
            return "QEMU (HMP info migrate, QEMU 0.12-10.0 layout)"
        if text.startswith("Status: "):
            return "QEMU (HMP info migrate, QEMU 10.1+ layout)"
    return "QEMU"


_DESCRIBERS = {
    "ping": _ping,
    "sysbench": _sysbench,
    "sysbench-cpu": _sysbench,
    "sysbench-memory": _sysbench,
    "dbench": _dbench,
    "build": _build,
    "dirtier": _dirtier,
    "xl": _xl,
    "qemu": _qemu,
}
