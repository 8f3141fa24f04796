"""A kernel compile (study test 6) as a probe: progress of a ``make -jN`` in the guest.

:func:`build_command` wraps any build argv in a POSIX sh script that changes to
the source directory, merges the build's stderr into stdout (one stream, in
order) and brackets it with two marker lines, ``miglab-build start`` and
``miglab-build exit=N``, so the parser learns the exit status from the stream.
With ``repeat=True`` (:data:`REBUILD_SCRIPT`) it cleans the tree (``make clean``:
the build argv plus ``clean``) and then builds it, cleans it, builds it again until
stopped or a build fails; each build between
``miglab-build round=N start uptime=S`` and ``miglab-build round=N exit=RC uptime=S``
(the guest's ``/proc/uptime``), so each build's duration is measured in the guest,
as ``time make`` would.

The parser counts compile steps: kbuild's quiet lines (``  CC      kernel/fork.o``,
``  CC [M]  drivers/...``, ``  HOSTCC``, ``  AS``, ``  CXX``) and plain compiler
command lines (``gcc ... -c ...``, as make echoes them or kbuild with ``V=1``).
At most one sample per ``period_s`` (a kernel has thousands of files):

- progress: ``files`` (compiled so far), ``elapsed_s``, ``files_per_s`` (over
  the window since the previous progress sample);
- one per finished build of a repeated build: ``round``, ``build_s`` (its duration
  from the guest's uptime stamps; from the clock when a stamp is missing),
  ``round_exit_status``, ``round_files``;
- end (``summary: 1.0``): ``exit_status`` (None when the stream ended without
  the exit marker), ``files``, ``elapsed_s``, ``files_per_s`` (whole run),
  ``errors`` (compiler ``error:`` lines and make's ``*** ... Error N``), and for a
  repeated build ``builds`` (how many finished with exit status 0).

Times come from the clock (a compile prints none of its own), except the duration of
each repeated build, which the wrapper's uptime stamps give.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from pydantic import Field

from backend.events import Sample
from backend.probes.base import (
    MAX_THREADS,
    SUMMARY,
    Clock,
    LineParser,
    MetricSpec,
    Options,
    Probe,
    RunContext,
    SampleMaker,
    positive_int,
    shell_argv,
)

PROBE = "build"
START_MARKER = "miglab-build start"
EXIT_MARKER = "miglab-build exit="

REBUILD_NAME = "miglab-rebuild"
ROUND_MARKER = "miglab-build round="

UNITS: dict[str, str] = {
    "elapsed_s": "s",
    "files_per_s": "files/s",
    "build_s": "s",
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

# The same contract as BUILD_SCRIPT, for a tree built over and over. A full build each
# time: clean first (a tree may hold objects of an earlier build), then build, clean,
# build... The clean's output is dropped (rm lines), its errors are kept.
REBUILD_SCRIPT = """\
exec 2>&1
dir=$1
shift
if [ -n "$dir" ]; then
  cd -- "$dir" || exit 2
fi
stamp() { cut -d' ' -f1 /proc/uptime 2>/dev/null; }
echo "miglab-build start"
n=0
while :; do
  "$@" clean > /dev/null
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "miglab-build clean exit=$rc"
    break
  fi
  n=$((n + 1))
  echo "miglab-build round=$n start uptime=$(stamp)"
  "$@"
  rc=$?
  echo "miglab-build round=$n exit=$rc uptime=$(stamp)"
  [ "$rc" -eq 0 ] || break
done
echo "miglab-build exit=$rc"
exit "$rc"
"""

_KBUILD = re.compile(r"\s+(?:HOST)?(?:CC|CXX)(?: \[M\])?\s+\S|\s+AS(?: \[M\])?\s+\S")
_COMPILER = re.compile(
    r"\s*(?:ccache\s+)?(?:\S*/)?(?:[\w.+]+-)*(?:gcc|cc|tcc|clang|g\+\+|c\+\+)(?:-[\d.]+)?"
    r"\s(?:.*\s)?-c(?:\s|$)"
)
# "fatal error: x.h: No such file", "make: *** [Makefile:23: x.o] Error 1" (not "Waiting ...").
_ERROR = re.compile(r"make(?:\[\d+\])?: \*\*\* .*\bError \d+|.*\berror:")
_EXIT = re.compile(re.escape(EXIT_MARKER) + r"(\d+)\s*$")
_ROUND = re.compile(
    re.escape(ROUND_MARKER) + r"(\d+) (?:start|exit=(\d+)) uptime=(\d+(?:\.\d+)?)?\s*$"
)


def make_argv(
    jobs: int, *, targets: Sequence[str] = (), variables: Sequence[str] = ()
) -> list[str]:
    """``make -jN [VAR=value ...] [target ...]``, e.g. ``make_argv(2, targets=["bzImage"])``."""
    for item in (*targets, *variables):
        if not item or item.startswith("-"):
            raise ValueError(f"not a make target or variable: {item!r}")
    return ["make", f"-j{positive_int('jobs', jobs)}", *variables, *targets]


def build_command(
    build: Sequence[str],
    *,
    directory: str | None = None,
    shell: str | Sequence[str] = "sh",
    repeat: bool = False,
) -> list[str]:
    """``[*shell, "-c", BUILD_SCRIPT, "miglab-build", directory or "", *build]``; with
    ``repeat`` the script is :data:`REBUILD_SCRIPT`, named ``miglab-rebuild``, and
    ``[*build, "clean"]`` cleans the tree (so ``build`` names no target of its own)."""
    if not build or not build[0]:
        raise ValueError("build must be a non-empty argv")
    if directory == "":
        raise ValueError("directory must not be empty (None: stay where the shell starts)")
    script, name = (REBUILD_SCRIPT, REBUILD_NAME) if repeat else (BUILD_SCRIPT, "miglab-build")
    return [*shell_argv(shell), "-c", script, name, directory or "", *build]


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
        self._builds: int | None = None  # builds of a repeated build that exited 0
        self._round_start: tuple[int, float, float | None] | None = None  # n, t, uptime
        self._round_files = 0

    def feed(self, line: str) -> list[Sample]:
        line = line.rstrip("\r\n")
        if self._done:
            return []
        if line == START_MARKER:
            self._begin(self._clock())
            return []
        if m := _EXIT.match(line):
            return self._end(float(m[1]))
        if m := _ROUND.match(line):
            return self._round(int(m[1]), m[2], m[3])
        if is_compile_line(line):
            t = self._clock()
            self._begin(t)
            self._files += 1
            self._round_files += 1
            if t - self._window_t >= self._period:
                return [self._progress(t)]
        elif _ERROR.match(line):
            self._errors += 1
        return []

    def _round(self, n: int, exit_status: str | None, uptime: str | None) -> list[Sample]:
        t = self._clock()
        self._begin(t)
        stamp = float(uptime) if uptime is not None else None
        self._builds = self._builds or 0  # a repeated build: its summary counts builds
        if exit_status is None:  # a build starts
            self._round_start = (n, t, stamp)
            self._round_files = 0
            return []
        if self._round_start is None or self._round_start[0] != n:
            return []  # its start was not seen: no duration to give
        _, t0, stamp0 = self._round_start
        self._round_start = None
        status = int(exit_status)
        if status == 0:
            self._builds += 1
        took = stamp - stamp0 if stamp is not None and stamp0 is not None else t - t0
        values: dict[str, float | None] = {
            "round": float(n),
            "build_s": took,
            "round_exit_status": float(status),
            "round_files": float(self._round_files),
        }
        return [self._make(t, values)]

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
        if self._builds is not None:
            values["builds"] = float(self._builds)
        out.append(self._make(t, values))
        return out


# --------------------------------------------------------------------------- the probe


class BuildOptions(Options):
    """A ``make -jN`` build in the guest: the study's kernel compile."""

    jobs: int = Field(default=2, ge=1, le=MAX_THREADS)
    """make -jN (one job per vCPU), 1 to 1024."""

    directory: str | list[str] | None = None
    """The source tree (a Linux kernel tree for the study's test 6), or a list of
    trees: the first one the guest has is built (None: where its shell starts)."""

    targets: list[str] = Field(default_factory=list)
    """make targets (empty: the tree's default)."""

    variables: list[str] = Field(default_factory=list)
    """make variables, like "V=1"."""

    repeat: bool = False
    """Clean the tree and build it, over and over until the run stops; each build's
    duration is a sample. ``make clean`` cleans, so the build takes no targets."""

    @property
    def directories(self) -> list[str]:
        """The trees to look for, in order."""
        if self.directory is None:
            return []
        return [self.directory] if isinstance(self.directory, str) else list(self.directory)

    def argv(self, directory: str | None = None, *, shell: str | Sequence[str] = "sh") -> list[str]:
        """The build's argv, in ``directory`` (one of :attr:`directories`; default the first)."""
        if self.repeat and self.targets:
            raise ValueError("repeat builds the tree's default target: give no targets")
        if isinstance(self.directory, list) and not self.directory:
            raise ValueError("directory: give at least one tree (or leave it out)")
        make = make_argv(self.jobs, targets=self.targets, variables=self.variables)
        where = directory or next(iter(self.directories), None)
        return build_command(make, directory=where, shell=shell, repeat=self.repeat)

    def _try_argv(self) -> list[str]:
        for directory in self.directories:
            build_command(["make"], directory=directory)  # refuses an empty one
        return self.argv()


class BuildProbe(Probe[BuildOptions]):
    """A build in the first of its trees that the guest has."""

    kind = PROBE
    description = "a make -jN build: files compiled per second"
    options = BuildOptions
    units = UNITS
    metrics = (
        # Kernel compile: fewer files compiled per second is worse.
        MetricSpec(PROBE, "files_per_s", "compile (build)", "files/s", higher_is_better=True),
        # A repeated build: one point per build, its duration; longer is worse.
        MetricSpec(PROBE, "build_s", "compile time (one build)", "s", higher_is_better=False),
    )

    def argv(self, options: BuildOptions, run: RunContext) -> list[str]:
        return options.argv(run.tree)

    def new_parser(self, host: str, clock: Clock = time.time) -> LineParser:
        return BuildParser(host, clock=clock)

    def trees(self, options: BuildOptions) -> list[str]:
        return options.directories


BUILD = BuildProbe()
