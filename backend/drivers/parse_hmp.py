"""QEMU's human monitor (HMP) ``info migrate`` output, as :class:`MigrationStatus` values.

Formats read (``migration/migration-hmp-cmds.c``, before 8.0 ``monitor/hmp-cmds.c`` /
``hmp.c``):

- QEMU 0.12 to 10.0: ``Migration status: completed``, then one ``key: value unit`` a line
  (``total time: 4023 ms``, ``downtime: 1 ms``, ``transferred ram: 1037 kbytes``,
  ``throughput: 2.34 mbps``, ``dirty sync count: 4`` ...). Releases before 5.1 wrote
  ``milliseconds`` where later ones write ``ms`` (``monitor/hmp-cmds.c``, 2020), older
  ones have fewer lines, and a ``capabilities: ...`` line or (4.x to 10.0) a ``globals:``
  block comes first. Captured from QEMU 7.2 (tests/data/qmp).
- QEMU 10.1 and later: ``Status: completed``, ``Time (ms): total=N, setup=N, down=N``,
  ``RAM info:`` with ``Throughput (mbps): X``, ``Sizes (KB): psize=N, total=N``,
  ``transferred=N, remain=N,``, ``Pages: normal=N, zero=N, rate_per_sec=N``,
  ``Others: dirty_syncs=N``. Format from QEMU's source, not captured.

Sizes in kbytes become bytes (``N * 1024``: QEMU printed ``bytes >> 10``). A value that
reads ``nan``/``-nan``/``inf`` is null. Lines pasted with their ``(qemu)`` prompt, with
tabs or runs of spaces, or with CRLF endings read the same. A line this parser does not
know is skipped and counted in :attr:`HmpInfoMigrateParser.skipped`, never raised.
"""

from __future__ import annotations

import math
import re
from typing import Any

from backend.drivers.qmp import MigrationStatus

_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|nan|inf))"
_STATUS = re.compile(r"(?:Migration status|Status): ([a-z-]+)(?: \((?P<error>.*)\))?$")
_MS = re.compile(rf"(total time|expected downtime|downtime|setup): {_NUMBER} (?:ms|milliseconds)$")
_KBYTES = re.compile(
    rf"(transferred ram|remaining ram|total ram|normal bytes|page size|precopy ram|"
    rf"downtime ram): {_NUMBER} kbytes$"
)
_PAGES = re.compile(rf"(duplicate|normal|dirty pages rate): {_NUMBER} pages$")
_PLAIN = re.compile(rf"(dirty sync count|pages-per-second|cpu throttle percentage): {_NUMBER}$")
_MBPS = re.compile(rf"(?:throughput: {_NUMBER} mbps|Throughput \(mbps\): {_NUMBER})$")
_CPU_THROTTLE = re.compile(rf"CPU Throttle \(%\): {_NUMBER}$")
# 10.1+: "Time (ms): total=...", "Sizes (KB): ...", "Pages: ...", "Others: ..." and the
# untitled "transferred=N, remain=N," / "precopy=N, ..." lines: all "name=value" lists.
_PAIRS_LINE = re.compile(r"(?:(?:Time \(ms\)|Sizes \(KB\)|Pages|Others): )?(?:\w+=\S+,? ?)+$")
_PAIR = re.compile(rf"(\w+)={_NUMBER}")

_MS_FIELDS = {
    "total time": "total_time_ms",
    "expected downtime": "expected_downtime_ms",
    "downtime": "downtime_ms",
    "setup": "setup_time_ms",
}
_KBYTES_FIELDS = {
    "transferred ram": "transferred",
    "remaining ram": "remaining",
    "total ram": "total",
    "normal bytes": "normal_bytes",
    "page size": "page_size",
    "precopy ram": "precopy_bytes",
    "downtime ram": "downtime_bytes",
}
_PAGES_FIELDS = {
    "duplicate": "duplicate",
    "normal": "normal",
    "dirty pages rate": "dirty_pages_rate",
}
_PLAIN_FIELDS = {"dirty sync count": "dirty_sync_count", "pages-per-second": "pages_per_second"}
# name=value pairs of 10.1+, by the line's title: where each value goes, and its scale.
_TIME_PAIRS = {
    "total": ("total_time_ms", 1),
    "setup": ("setup_time_ms", 1),
    "exp_down": ("expected_downtime_ms", 1),
    "down": ("downtime_ms", 1),
}
_RAM_PAIRS = {
    "psize": ("page_size", 1024),
    "total": ("total", 1024),  # only on "Sizes (KB):"
    "transferred": ("transferred", 1024),
    "remain": ("remaining", 1024),
    "precopy": ("precopy_bytes", 1024),
    "normal": ("normal", 1),
    "zero": ("duplicate", 1),
    "rate_per_sec": ("pages_per_second", 1),
    "dirty_syncs": ("dirty_sync_count", 1),
    "dirty_pages_rate": ("dirty_pages_rate", 1),
}
# Lines of the format that say nothing miglab records (not counted as not understood).
_KNOWN = re.compile(
    r"(?:globals:|Globals:|capabilities:|Outgoing migration blocked:|socket address: \[|"
    r"Sockets: \[|\]|RAM info:|QEMU [\d.]+ monitor|"
    r"(?:store-global-state|only-migratable|send-configuration|send-section-footer|"
    r"send-switchover-start|decompress-error-check|clear-bitmap-shift|skipped|"
    r"multifd bytes|postcopy ram|postcopy request count|postcopy blocktime|"
    r"postcopy vcpu blocktime|cache size|xbzrle [a-z ]+|vfio device transferred|"
    r"dirty-limit [a-z ]+|Zero-copy-send fallbacks happened|"
    r"Postcopy [A-Za-z ()]+|Dirty-limit [A-Za-z ()]+|XBZRLE|"
    r"miss_rate|Migration setup timestamps):)"
)


def _number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _integer(text: str, scale: int = 1) -> int | None:
    value = _number(text)
    return None if value is None else int(value) * scale


class HmpInfoMigrateParser:
    """Feed lines; each ``info migrate`` block comes out as a :class:`MigrationStatus`
    once the next block starts, or at :meth:`finish`."""

    def __init__(self) -> None:
        self.skipped = 0  # lines not understood
        self.blocks = 0
        self._status: dict[str, Any] | None = None
        self._ram: dict[str, Any] = {}

    def feed(self, line: str) -> list[MigrationStatus]:
        text = " ".join(line.split())  # tabs, runs of spaces, CR: as one space
        if text.startswith("(qemu)"):  # the prompt and the command it echoes
            return []
        if not text:
            return []
        if m := _STATUS.match(text):
            done = self._flush()
            self._status = {"status": m[1]}
            if m["error"]:
                self._status["error_desc"] = m["error"]
            return done
        if self._read_value(text):
            return []
        if not _KNOWN.match(text):
            self.skipped += 1
        return []

    def finish(self) -> list[MigrationStatus]:
        return self._flush()

    def _read_value(self, text: str) -> bool:
        status = self._status
        if status is None:  # a value before any status line: not one we can place
            return False
        ram = self._ram
        if m := _MS.match(text):
            status[_MS_FIELDS[m[1]]] = _integer(m[2])
        elif m := _KBYTES.match(text):
            ram[_KBYTES_FIELDS[m[1]]] = _integer(m[2], 1024)
        elif m := _PAGES.match(text):
            ram[_PAGES_FIELDS[m[1]]] = _integer(m[2])
        elif m := _PLAIN.match(text):
            if m[1] == "cpu throttle percentage":
                status["cpu_throttle_percentage"] = _integer(m[2])
            else:
                ram[_PLAIN_FIELDS[m[1]]] = _integer(m[2])
        elif m := _MBPS.match(text):
            ram["mbps"] = _number(m[1] or m[2])
        elif m := _CPU_THROTTLE.match(text):
            status["cpu_throttle_percentage"] = _integer(m[1])
        elif _PAIRS_LINE.match(text) and (pairs := _PAIR.findall(text)):
            timing = text.startswith("Time (ms):")
            target, names = (status, _TIME_PAIRS) if timing else (ram, _RAM_PAIRS)
            known = False
            for name, value in pairs:
                if name in names:
                    field, scale = names[name]
                    target[field] = _integer(value, scale)
                    known = True
            return known or text.startswith(("Pages:", "Others:", "Sizes (KB):"))
        else:
            return False
        return True

    def _flush(self) -> list[MigrationStatus]:
        if self._status is None:
            return []
        values = dict(self._status)
        if self._ram:
            values["ram"] = dict(self._ram)
        self._status, self._ram = None, {}
        self.blocks += 1
        return [MigrationStatus.model_validate(values)]
