"""A kernel compile (study test 6) as a probe: progress of a ``make -jN`` in the guest.

:func:`build_command` wraps any build argv in a POSIX sh script that changes to
the source directory, merges the build's stderr into stdout (one stream, in
order) and brackets it with two marker lines, ``miglab-build start`` and
``miglab-build exit=N``, so the parser learns the exit status from the stream.

The parser counts compile steps: kbuild's quiet lines (``  CC      kernel/fork.o``,
``  CC [M]  drivers/...``, ``  HOSTCC``, ``  AS``, ``  CXX``) and plain compiler
command lines (``gcc ... -c ...``, as make echoes them or kbuild with ``V=1``).
At most one sample per ``period_s`` (a kernel has thousands of files):

- progress: ``files`` (compiled so far), ``elapsed_s``, ``files_per_s`` (over
  the window since the previous progress sample);
- end (``summary: 1.0``): ``exit_status`` (None when the stream ended without
  the exit marker), ``files``, ``elapsed_s``, ``files_per_s`` (whole run),
  ``errors`` (compiler ``error:`` lines and make's ``*** ... Error N``).

Times come from the clock: a compile prints none of its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from backend.events import Sample
from backend.probes.base import SUMMARY, Clock, SampleMaker, positive_int, shell_argv

PROBE = "build"
START_MARKER = "miglab-build start"
EXIT_MARKER = "miglab-build exit="

UNITS: dict[str, str] = {
    "elapsed_s": "s",
    "files_per_s": "files/s",
}

# $1 is the directory ("" = stay), the rest is the build's argv, never pasted into
# the script. stderr joins stdout so warnings keep their place between CC lines.
BUILD_SCRIPT = """\
exec 2>&1
dir=$1
shift
if [ -n "$dir" ]; then
  cd -- "$dir" || exit 2
fi
echo "miglab-build start"
"$@"
rc=$?
echo "miglab-build exit=$rc"
exit "$rc"
"""

_KBUILD = re.compile(r"\s+(?:HOST)?(?:CC|CXX)(?: \[M\])?\s+\S|\s+AS(?: \[M\])?\s+\S")
_COMPILER = re.compile(
    r"\s*(?:ccache\s+)?(?:\S*/)?(?:[\w.+]+-)*(?:gcc|cc|clang|g\+\+|c\+\+)(?:-[\d.]+)?"
    r"\s(?:.*\s)?-c(?:\s|$)"
)
# "fatal error: x.h: No such file", "make: *** [Makefile:23: x.o] Error 1" (not "Waiting ...").
_ERROR = re.compile(r"make(?:\[\d+\])?: \*\*\* .*\bError \d+|.*\berror:")
_EXIT = re.compile(re.escape(EXIT_MARKER) + r"(\d+)\s*$")


def make_argv(
    jobs: int, *, targets: Sequence[str] = (), variables: Sequence[str] = ()
) -> list[str]:
    """``make -jN [VAR=value ...] [target ...]``, e.g. ``make_argv(2, targets=["bzImage"])``."""
    for item in (*targets, *variables):
        if not item or item.startswith("-"):
            raise ValueError(f"not a make target or variable: {item!r}")
    return ["make", f"-j{positive_int('jobs', jobs)}", *variables, *targets]


def build_command(
    build: Sequence[str], *, directory: str | None = None, shell: str | Sequence[str] = "sh"
) -> list[str]:
    """``[*shell, "-c", BUILD_SCRIPT, "miglab-build", directory or "", *build]``."""
    if not build or not build[0]:
        raise ValueError("build must be a non-empty argv")
    if directory == "":
        raise ValueError("directory must not be empty (None: stay where the shell starts)")
    return [*shell_argv(shell), "-c", BUILD_SCRIPT, "miglab-build", directory or "", *build]


def is_compile_line(line: str) -> bool:
    """Whether ``line`` reports one compiled file (kbuild quiet line or compiler call)."""
    return bool(_KBUILD.match(line) or _COMPILER.match(line))


class BuildParser:
    """Counts compile steps of a build wrapped by :func:`build_command`."""

    def __init__(
        self,
        host: str,
        *,
        probe: str = PROBE,
        clock: Clock = time.time,
        period_s: float = 1.0,
    ) -> None:
        self._make = SampleMaker(probe, host, UNITS)
        self._clock = clock
        self._period = period_s
        self._start: float | None = None
        self._files = 0
        self._errors = 0
        self._window_t = 0.0
        self._window_files = 0
        self._done = False

    def feed(self, line: str) -> list[Sample]:
        line = line.rstrip("\r\n")
        if self._done:
            return []
        if line == START_MARKER:
            self._begin(self._clock())
            return []
        if m := _EXIT.match(line):
            return self._end(float(m[1]))
        if is_compile_line(line):
            t = self._clock()
            self._begin(t)
            self._files += 1
            if t - self._window_t >= self._period:
                return [self._progress(t)]
        elif _ERROR.match(line):
            self._errors += 1
        return []

    def finish(self) -> list[Sample]:
        return [] if self._done else self._end(None)

    def _begin(self, t: float) -> None:
        if self._start is None:
            self._start = self._window_t = t

    def _progress(self, t: float) -> Sample:
        start = self._start if self._start is not None else t
        span = t - self._window_t
        rate = (self._files - self._window_files) / span if span > 0 else None
        self._window_t, self._window_files = t, self._files
        values: dict[str, float | None] = {
            "files": float(self._files),
            "elapsed_s": t - start,
            "files_per_s": rate,
        }
        return self._make(t, values)

    def _end(self, exit_status: float | None) -> list[Sample]:
        self._done = True
        t = self._clock()
        out: list[Sample] = []
        if self._files > self._window_files:
            out.append(self._progress(t))  # the last partial window
        elapsed = t - self._start if self._start is not None else 0.0
        values: dict[str, float | None] = {
            SUMMARY: 1.0,
            "exit_status": exit_status,
            "files": float(self._files),
            "elapsed_s": elapsed,
            "files_per_s": self._files / elapsed if elapsed > 0 else None,
            "errors": float(self._errors),
        }
        out.append(self._make(t, values))
        return out
