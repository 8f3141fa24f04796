"""`miglab import`: a raw tool output someone captured by hand, as a session log.

People who ran ping, sysbench, dbench, ``xl migrate`` or a loop of QMP
``query-migrate`` by hand can have miglab's reports too. Each kind goes through
exactly the parser the live probes and drivers use, so an imported log and a
recorded one are the same kind of data. Which tool wrote a file (``auto``) and in
which format is told by :mod:`backend.import_detect`.

A ping line without ``-D``'s timestamp (BusyBox ping, iputils without -D) gives a
sample with no time (``t`` None): when ping sent it is not in the text (its interval
is not printed either), so it is not made up; the sample keeps its seq and its place.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from backend.drivers import ParseError
from backend.drivers.hv_qemu import progress_event as qemu_progress
from backend.drivers.hv_xen import progress_event as xl_progress
from backend.drivers.parse_hmp import HmpInfoMigrateParser
from backend.drivers.parse_xl import MigratePhase, XlMigrateParser
from backend.drivers.qmp import MigrationStatus
from backend.drivers.qmp import loads as qmp_loads
from backend.events import Event, MigrationFinished, MigrationProgress, Note
from backend.probes import PROBES, probe_of
from backend.probes.base import LineParser

# What `miglab import` accepts: the probe kinds, "sysbench" (cpu or memory, told apart
# by the output itself), the two migration logs, and "auto" (the tool told from the text).
AUTO = "auto"
KINDS = (*PROBES, "sysbench", "xl", "qemu")


class ImportError_(ValueError):
    """The file is not what its kind says; the message names the line."""


def _sysbench_kind(lines: list[str]) -> str:
    text = "\n".join(lines[:40])
    if "Prime numbers limit" in text or "CPU speed" in text:
        return "sysbench-cpu"
    # 0.4.x: "Doing CPU performance benchmark"; its later branch: "Primer numbers limit"
    if "CPU performance benchmark" in text or "Primer numbers limit" in text:
        return "sysbench-cpu"
    # 0.5's memory test names itself nowhere: its interval and summary lines tell it
    if "memory" in text.lower() or "B/sec" in text or "Operations performed" in text:
        return "sysbench-memory"
    raise ImportError_("not sysbench cpu or memory output (no 'Prime numbers limit' or memory)")


def import_probe(kind: str, lines: list[str], host: str, start: float) -> list[Event]:
    """A probe's raw output as its samples (times relative to the tool's start are
    anchored at ``start``; ping lines without a timestamp have no time)."""
    events = list(iter_probe(kind, lines, host, start))
    if not events:
        raise ImportError_(f"no {kind} readings found")
    return events


@dataclass
class ImportCounts:
    """What an import skipped, known once its lines are all read."""

    lines_not_understood: int = 0


def iter_probe(
    kind: str,
    lines: Iterable[str],
    host: str,
    start: float,
    counts: ImportCounts | None = None,
) -> Iterator[Event]:
    """:func:`import_probe` a line at a time: the samples as the lines are read (a capture
    of millions of lines is never held); no sample at all is the caller's to refuse.

    ``counts``, when given, gets the lines the parser skipped as unknown (for parsers
    that count them) once the stream is done."""
    stream = iter(lines)
    if kind == "sysbench":  # told apart by its first lines
        head = list(itertools.islice(stream, 40))
        kind = _sysbench_kind(head)
        stream = itertools.chain(head, stream)
    parser = _parser(kind, host, start)
    for number, line in enumerate(stream, start=1):
        try:
            yield from parser.feed(line)
        except (ParseError, ValueError) as exc:
            raise ImportError_(f"line {number}: {exc}") from exc
    yield from parser.finish()
    if counts is not None:
        counts.lines_not_understood = int(getattr(parser, "lines_not_understood", 0))


def _parser(kind: str, host: str, start: float) -> LineParser:
    return probe_of(kind).import_parser(host, start)


def import_xl(lines: list[str], domain: str, source: str, dest: str, start: float) -> list[Event]:
    """``xl -v migrate`` output as progress events and a result (no timestamps in it)."""
    parser = XlMigrateParser()
    events: list[Event] = []
    for number, line in enumerate(lines, start=1):
        try:
            updates = parser.feed(line)
        except ParseError as exc:
            raise ImportError_(f"line {number}: {exc}") from exc
        events.extend(xl_progress(domain, source, dest, u).model_copy(update={"t": start})
                      for u in updates)  # fmt: skip
    parser.finish(None)
    if not events:
        raise ImportError_("no xl migrate output found")
    ok = parser.phase is MigratePhase.DONE
    events.append(
        MigrationFinished(
            t=start, domain=domain, source=source, dest=dest, ok=ok,
            iterations=max((e.iteration or 0 for e in events
                            if isinstance(e, MigrationProgress)), default=None) or None,
            error=None if ok else "; ".join(parser.causes) or "xl did not report success",
        )
    )  # fmt: skip
    events.append(Note(t=start, text="imported from xl output: it has no timestamps"))
    return events


class _Skipped:
    """Lines an import read past without understanding them."""

    def __init__(self) -> None:
        self.lines = 0


def _query_migrate_answers(
    lines: Iterable[str], skipped: _Skipped | None = None
) -> Iterable[tuple[float | None, dict[str, Any]]]:
    """(time, query-migrate answer) from QMP replies, bare answers or miglab's QMP captures.

    ``-nan``/``inf`` (invalid JSON older QEMU sends) read as null; a line that is not JSON
    at all (a QEMU error message in a transcript) is skipped and counted in ``skipped``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = qmp_loads(line)
        except json.JSONDecodeError:
            if skipped is not None:
                skipped.lines += 1
            continue
        except RecursionError:
            raise ImportError_(f"line {number}: nested too deep to read") from None
        except ValueError as exc:  # int() of more than 4300 digits
            raise ImportError_(f"line {number}: a number too long to read ({exc})") from None
        t = None
        if isinstance(data, dict) and "line" in data and "dir" in data:  # a capture record
            t = data.get("t")
            try:
                data = qmp_loads(data["line"])
            except (TypeError, ValueError, RecursionError):
                continue
        if isinstance(data, dict) and isinstance(data.get("return"), dict):
            data = data["return"]
        if isinstance(data, dict) and "status" in data and ("ram" in data or "total-time" in data):
            yield (float(t) if isinstance(t, int | float) else None), data


def is_hmp_info_migrate(lines: list[str]) -> bool:
    """True when the text is HMP ``info migrate`` output rather than QMP JSON: a
    ``Migration status:`` (``Status:`` from QEMU 10.1) line before any JSON object."""
    for line in lines:
        text = " ".join(line.split()).removeprefix("(qemu) ")
        if text.startswith("{"):
            return False
        if text.startswith(("Migration status: ", "Status: ")):
            return True
    return False


def _hmp_statuses(lines: list[str], skipped: _Skipped) -> Iterator[MigrationStatus]:
    parser = HmpInfoMigrateParser()
    for line in lines:
        yield from parser.feed(line)
    yield from parser.finish()
    skipped.lines += parser.skipped


def _qmp_answers(
    lines: list[str], skipped: _Skipped
) -> Iterator[tuple[float | None, MigrationStatus]]:
    for t, answer in _query_migrate_answers(lines, skipped):
        try:
            status = MigrationStatus.model_validate(answer)
        except ValidationError as exc:
            raise ImportError_(f"a query-migrate answer that does not validate: {exc}") from exc
        except RecursionError:
            raise ImportError_("a query-migrate answer nested too deep to read") from None
        yield t, status


def import_qemu(lines: list[str], domain: str, source: str, dest: str, start: float) -> list[Event]:
    """A dump of ``query-migrate`` answers (QMP JSON) or of HMP ``info migrate`` output as
    progress events and QEMU's own result; the format is told from the text, and a Note
    says which it was and how many lines were skipped as not understood."""
    events: list[Event] = []
    last: MigrationStatus | None = None
    skipped = _Skipped()
    hmp = is_hmp_info_migrate(lines)
    answers = (
        ((None, s) for s in _hmp_statuses(lines, skipped)) if hmp else _qmp_answers(lines, skipped)
    )
    for t, status in answers:
        # Without a capture time, QEMU's own total-time places the answer.
        offset = t if t is not None else (status.total_time_ms or 0) / 1000
        events.append(qemu_progress(domain, source, dest, status).model_copy(
            update={"t": start + offset}))  # fmt: skip
        last = status
    found = "HMP info migrate" if hmp else "QMP query-migrate"
    if last is None:
        raise ImportError_(f"no {found} answers found")
    ram = last.ram
    events.append(
        MigrationFinished(
            t=events[-1].t, domain=domain, source=source, dest=dest,
            ok=last.status == "completed",
            total_time_ms=last.total_time_ms, downtime_ms=last.downtime_ms,
            transferred_bytes=ram.transferred if ram else None,
            iterations=ram.dirty_sync_count if ram else None,
            error=None if last.status == "completed" else last.error_desc or last.status,
        )
    )  # fmt: skip
    events.append(Note(t=events[-1].t, text=f"imported from QEMU {found} output; "
                       f"{skipped.lines} lines not understood (skipped)"))  # fmt: skip
    return events
