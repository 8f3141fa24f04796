"""The RAM dirtier (study test 7): rewrite a tmpfs file at full speed, round after round.

Pre-copy migration resends every page dirtied since the last pass; a guest that
rewrites ``size_mib`` of RAM faster than the link carries it never converges,
which is what test 7 measures. The dirtier is a POSIX sh loop (dash, busybox
ash) around ``dd``.

The data must not be zeros: QEMU sends a zero page as a flag of a few bytes, not
its 4 KiB, so a file of zeros costs the migration almost nothing however often it
is rewritten (Xen sends every dirty page in full; QEMU does not). So the file is
filled once with random data: 1 MiB from ``/dev/urandom``, then doubled by copying
the file's start onto its end (a few ``dd`` runs; /dev/urandom alone is ~10x slower
in a TCG guest). Each round then copies the file onto itself in place,
``dd if=PATH of=PATH bs=1M count=SIZE conv=notrunc``: every page is written again
(dirty for the hypervisor, though its bytes are the same) and no second copy of the
file takes guest RAM. ``notrunc`` keeps the same tmpfs pages.

Output: ``miglab-dirtier start size_mib=N rounds=R``, then ``miglab-dirtier filled
mib=SIZE cs=CENTISECONDS`` once the file is filled, then per round
``miglab-dirtier round=N mib=SIZE cs=CENTISECONDS uptime=U``, and ``miglab-dirtier
done rounds=N`` after the last of a fixed count. A failed ``dd`` prints
``miglab-dirtier error fill`` or ``miglab-dirtier error round=N``, then dd's message.
Times come from /proc/uptime (centiseconds; busybox ``date`` has no ``%N`` and
busybox ``dd`` may print no rate), and the rate is computed here (sh has only
integers). Samples: ``round``, ``mib``, ``elapsed_s``, ``mib_per_s``, timed at the
round's end (uptime, anchored on the clock at the first round); the fill makes no
sample (it is set-up, not load). The end sample (``summary: 1.0``): ``rounds``,
``total_mib``, ``total_elapsed_s``, ``avg_mib_per_s``, ``failed`` (1.0 if dd failed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, model_validator

from backend.config import MAX_MEMORY_MB
from backend.events import Sample
from backend.probes.base import (
    PLACEHOLDER_MEMORY_MB,
    SUMMARY,
    Clock,
    LineParser,
    MetricSpec,
    Options,
    Probe,
    RunContext,
    SampleMaker,
    option_error,
    positive_int,
    shell_argv,
)

PROBE = "dirtier"
DEFAULT_PATH = "/dev/shm/miglab-dirty"

UNITS: dict[str, str] = {
    "mib": "MiB",
    "elapsed_s": "s",
    "mib_per_s": "MiB/s",
    "total_mib": "MiB",
    "total_elapsed_s": "s",
    "avg_mib_per_s": "MiB/s",
}

# Positional parameters: $1 size in MiB, $2 rounds (0 = until stopped), $3 the file.
# They are checked here too: the script may be run by hand.
DIRTIER_SCRIPT = """\
size=$1
rounds=$2
path=$3
case $size in ''|*[!0-9]*|0) echo "miglab-dirtier: bad size_mib: $size" >&2; exit 2 ;; esac
case $rounds in ''|*[!0-9]*) echo "miglab-dirtier: bad rounds: $rounds" >&2; exit 2 ;; esac
case $path in /*) ;; *) echo "miglab-dirtier: path must be absolute: $path" >&2; exit 2 ;; esac
if [ ! -d "${path%/*}/" ]; then
  echo "miglab-dirtier: no directory for $path" >&2
  exit 2
fi
# The file holds size_mib of the guest's RAM: give it back however we stop.
trap 'rm -f -- "$path"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
now() {
  read -r up _ < /proc/uptime
  c=${up%.*}${up#*.}
  c=${c#"${c%%[!0]*}"}
  c=${c:-0}
}
fill_failed() {
  printf 'miglab-dirtier error fill\\n%s\\n' "$err"
  exit 1
}
echo "miglab-dirtier start size_mib=$size rounds=$rounds"
now
a=$c
# Random, not zeros (QEMU sends a zero page as a flag): 1 MiB, doubled up to size.
err=$(dd if=/dev/urandom of="$path" bs=1M count=1 2>&1) || fill_failed
n=1
while [ "$n" -lt "$size" ]; do
  k=$n
  if [ $((size - n)) -lt "$k" ]; then k=$((size - n)); fi
  err=$(dd if="$path" of="$path" bs=1M count="$k" seek="$n" conv=notrunc 2>&1) || fill_failed
  n=$((n + k))
done
now
printf 'miglab-dirtier filled mib=%d cs=%d\\n' "$size" "$((c - a))"
i=0
while [ "$rounds" -eq 0 ] || [ "$i" -lt "$rounds" ]; do
  i=$((i + 1))
  now
  a=$c
  # In place: every page written again (dirty), no second copy in RAM.
  if ! err=$(dd if="$path" of="$path" bs=1M count="$size" conv=notrunc 2>&1); then
    printf 'miglab-dirtier error round=%d\\n%s\\n' "$i" "$err"
    exit 1
  fi
  now
  printf 'miglab-dirtier round=%d mib=%d cs=%d uptime=%s\\n' "$i" "$size" "$((c - a))" "$up"
done
echo "miglab-dirtier done rounds=$i"
"""

_ROUND = re.compile(
    r"miglab-dirtier round=(?P<round>\d+) mib=(?P<mib>\d+) cs=(?P<cs>\d+) "
    r"uptime=(?P<up>\d+(?:\.\d+)?)\s*$"
)
_DONE = re.compile(r"miglab-dirtier done rounds=\d+\s*$")
_ERROR = re.compile(r"miglab-dirtier error (?:round=\d+|fill)\s*$")


def dirtier_command(
    size_mib: int,
    *,
    rounds: int = 0,
    path: str = DEFAULT_PATH,
    shell: str | Sequence[str] = "sh",
) -> list[str]:
    """``[*shell, "-c", DIRTIER_SCRIPT, "miglab-dirtier", size_mib, rounds, path]``.

    ``rounds`` 0 runs until the command is stopped. ``path`` must be on a RAM
    file system (tmpfs) in an existing directory; the file is removed on exit.
    """
    positive_int("size_mib", size_mib)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an integer >= 0 (0: until stopped), got {rounds!r}")
    if not path.startswith("/") or path.endswith("/") or "\n" in path:
        raise ValueError(f"path must be an absolute file path, got {path!r}")
    return [
        *shell_argv(shell),
        "-c",
        DIRTIER_SCRIPT,
        "miglab-dirtier",
        str(size_mib),
        str(rounds),
        path,
    ]


class DirtierParser:
    """Incremental parser of the dirtier's output."""

    def __init__(self, host: str, *, probe: str = PROBE, clock: Clock = time.time) -> None:
        self._make = SampleMaker(probe, host, UNITS)
        self._clock = clock
        self._anchor: float | None = None  # clock time at guest uptime 0
        self._last_t: float | None = None
        self._rounds = 0
        self._mib = 0
        self._cs = 0
        self._failed = False
        self._done = False

    def feed(self, line: str) -> list[Sample]:
        line = line.rstrip("\r\n")
        if self._done:
            return []
        if m := _ROUND.match(line):
            return self._round(m)
        if _ERROR.match(line):
            self._failed = True
        elif _DONE.match(line):
            return self._summary()
        return []

    def finish(self) -> list[Sample]:
        return [] if self._done else self._summary()

    def _round(self, m: re.Match[str]) -> list[Sample]:
        uptime = float(m["up"])
        if self._anchor is None:
            self._anchor = self._clock() - uptime
        t = self._last_t = self._anchor + uptime
        mib, cs = int(m["mib"]), int(m["cs"])
        self._rounds += 1
        self._mib += mib
        self._cs += cs
        values: dict[str, float | None] = {
            "round": float(m["round"]),
            "mib": float(mib),
            "elapsed_s": cs / 100,
            # Under 10 ms the uptime clock cannot tell the rate.
            "mib_per_s": mib * 100 / cs if cs > 0 else None,
        }
        return [self._make(t, values)]

    def _summary(self) -> list[Sample]:
        self._done = True
        if self._rounds == 0 and not self._failed:
            return []
        t = self._last_t if self._last_t is not None else self._clock()
        values: dict[str, float | None] = {
            SUMMARY: 1.0,
            "rounds": float(self._rounds),
            "total_mib": float(self._mib),
            "total_elapsed_s": self._cs / 100,
            "avg_mib_per_s": self._mib * 100 / self._cs if self._cs > 0 else None,
            "failed": 1.0 if self._failed else 0.0,
        }
        return [self._make(t, values)]


# --------------------------------------------------------------------------- the probe

DIRTIER_DEFAULT_MIB = 256
TMPFS_SHARE = 0.40
"""The most of the guest's memory (lab.toml's memory_mb) the dirtier's file may take:
/dev/shm holds half the RAM the guest's kernel sees, which is a few percent less than
the memory it was given (a 256 MB guest sees ~230 MB: its /dev/shm holds ~115 MiB)."""


class DirtierOptions(Options):
    """The RAM dirtier: rewrite a tmpfs file round after round until stopped."""

    size_mib: int | None = Field(default=None, ge=1, le=MAX_MEMORY_MB)
    """MiB of guest RAM rewritten each round, at most lab.toml's largest memory_mb (256
    when neither this nor size_pct is given)."""

    size_pct: float | None = Field(default=None, gt=0, le=100)
    """Instead of size_mib: this percentage of the guest's memory (lab.toml's memory_mb),
    at most what its /dev/shm holds; so the same scenario fits a 1 GB and a 256 MB guest."""

    path: str = DEFAULT_PATH
    """The file on a RAM file system (tmpfs) in the guest."""

    @model_validator(mode="before")
    @classmethod
    def _one_size(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and {"size_mib", "size_pct"} <= data.keys():
            raise option_error("give size_mib or size_pct, not both")
        return data

    def mib(self, memory_mb: int) -> int:
        """MiB rewritten each round in a guest of ``memory_mb``."""
        if self.size_pct is None:
            return self.size_mib if self.size_mib is not None else DIRTIER_DEFAULT_MIB
        wanted = int(memory_mb * self.size_pct / 100)
        return max(1, min(wanted, int(memory_mb * TMPFS_SHARE)))

    def argv(self, memory_mb: int, *, shell: str | Sequence[str] = "sh") -> list[str]:
        """The dirtier's argv for a guest of ``memory_mb`` (lab.toml's guest.memory_mb)."""
        return dirtier_command(self.mib(memory_mb), rounds=0, path=self.path, shell=shell)

    def _try_argv(self) -> list[str]:
        return self.argv(PLACEHOLDER_MEMORY_MB)


class DirtierProbe(Probe[DirtierOptions]):
    kind = PROBE
    description = "the RAM dirtier: MiB/s rewritten per round"
    options = DirtierOptions
    units = UNITS
    metrics = (
        # RAM dirtier: a lower rewrite rate means the guest was slowed (throttled, paused).
        MetricSpec(PROBE, "mib_per_s", "RAM dirtier", "MiB/s", higher_is_better=True),
    )

    def argv(self, options: DirtierOptions, run: RunContext) -> list[str]:
        return options.argv(run.guest_memory_mb)

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return DirtierParser(host, clock=clock)


DIRTIER = DirtierProbe()
