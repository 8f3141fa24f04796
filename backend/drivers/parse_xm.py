"""Parsers for Xen 3.x's ``xm`` (the xend toolstack): ``list``, ``list -l``, ``info``, ``migrate``.

Versions read: xm of Xen 3.0 to 3.4 (the toolstack of the 2009 study). Checked against
the published outputs in ``tests/data/xm`` (Xen 3.0 in the man page, 3.2, 3.3, 3.3.1)
and against xend's source of Xen 3.4.4 (``tools/python/xen/xm/main.py``,
``xend/XendConfig.py``, ``XendDomain.py``, ``XendCheckpoint.py``); the README there
names each. xm lived on beside xl until Xen 4.4; those later releases are not checked.

The facts these parsers are built on:

* ``xm list``: ``'%-40s %5s %5s %5s %10s %9s'`` header (``Name ID Mem VCPUs State
  Time(s)``; Xen 3.0 said ``Mem(MiB)`` and used narrower columns), rows
  ``'%(name)-40s %(domid)5s %(mem)5d %(vcpus)5d %(state)10s %(cpu_time)8.1f'``;
  ``--label`` adds a ``Label`` column. ``domid`` is empty for a managed domain that is
  not running. The six state letters are ``rbpscd`` (running, blocked, paused,
  shutdown, crashed, dying), ``-`` when off: unlike xl, "crashed" is a letter of its
  own, and there is no shutdown-reason letter.
* ``xm list -l``: xend's SXP, one ``(domain ...)`` per domain; memory in MiB.
* ``xm info``: ``'%-23s:' % key, value`` lines, memory in MiB, the version split into
  ``xen_major``, ``xen_minor`` and ``xen_extra`` (``3``, ``3``, ``.0``).
* ``xm migrate [--live] DOMAIN HOST`` prints nothing when it worked and reports no
  progress while xend migrates. A failure is ``Error: <xend's message>`` on stderr,
  usually followed by the usage of ``migrate`` on stdout. During a migration the
  source domain is named ``migrating-NAME`` (XendCheckpoint.save).

Every parser here reads what it can and counts the lines it does not understand
(``lines_not_understood``); none raises on its input. A value the text does not give
is None. Whitespace may be mangled (pasted from a terminal or a web page): rows are
split on runs of blanks, not on columns.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

from backend.drivers import ParseError
from backend.drivers.parse_xl import MigratePhase, MigrateUpdate

__all__ = [
    "MIGRATING_PREFIX",
    "XmDisk",
    "XmDomain",
    "XmDomainConfig",
    "XmInfo",
    "XmList",
    "XmListLong",
    "XmMigrateError",
    "XmMigrateParser",
    "XmMigrateResult",
    "XmNic",
    "XmState",
    "parse_xm_info",
    "parse_xm_list",
    "parse_xm_list_long",
    "parse_xm_migrate",
]

MIGRATING_PREFIX = "migrating-"
"""xend renames the source domain ``migrating-NAME`` while it saves it (XendCheckpoint.save)."""


# --- xm list ---------------------------------------------------------------------------

_STATE = r"[r-][b-][p-][s-][c-][d-]"


@dataclass(frozen=True, slots=True)
class XmState:
    """The six letters of xm's State column, ``rbpscd`` (XendConfig._get_old_state_string)."""

    running: bool
    blocked: bool
    paused: bool
    shutdown: bool
    crashed: bool
    dying: bool

    @classmethod
    def parse(cls, letters: str) -> XmState | None:
        """None when ``letters`` is not an xm state."""
        if not re.fullmatch(_STATE, letters):
            return None
        return cls(*(c != "-" for c in letters))

    def __str__(self) -> str:
        flags = (self.running, self.blocked, self.paused, self.shutdown, self.crashed, self.dying)
        return "".join(c if on else "-" for c, on in zip("rbpscd", flags, strict=True))


@dataclass(frozen=True, slots=True)
class XmDomain:
    name: str
    domid: int | None
    """None for a managed domain that is not running (xm prints an empty ID)."""
    mem_mib: int
    vcpus: int
    state: XmState
    cpu_time_s: float
    label: str | None = None
    """The ``Label`` column of ``xm list --label``."""


@dataclass(frozen=True, slots=True)
class XmList:
    domains: tuple[XmDomain, ...]
    lines_not_understood: int = 0


_LIST_HEADER_RE = re.compile(
    r"^Name\s+ID\s+Mem(?:\(MiB\))?\s+VCPUs\s+State\s+Time\(s\)(?:\s+Label)?$"
)
_LIST_ROW_RE = re.compile(
    r"^(?P<name>\S(?:.*?\S)?)\s+(?:(?P<id>\d+)\s+)?(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
    rf"(?P<state>{_STATE})\s+(?P<time>\d+\.\d+)(?:\s+(?P<label>\S.*))?$"
)


def parse_xm_list(text: str) -> XmList:
    """Parse ``xm list [--label] [DOMAIN...]`` (Xen 3.0-3.4); the header is optional."""
    domains: list[XmDomain] = []
    unknown = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _LIST_HEADER_RE.match(line):
            continue
        m = _LIST_ROW_RE.match(line)
        state = XmState.parse(m.group("state")) if m else None
        if m is None or state is None:
            unknown += 1
            continue
        domains.append(
            XmDomain(
                name=m.group("name"),
                domid=int(m.group("id")) if m.group("id") is not None else None,
                mem_mib=int(m.group("mem")),
                vcpus=int(m.group("vcpus")),
                state=state,
                cpu_time_s=float(m.group("time")),
                label=m.group("label"),
            )
        )
    return XmList(tuple(domains), unknown)


# --- xm info ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XmInfo:
    fields: tuple[tuple[str, str], ...]
    """Every ``key : value`` line, in order."""
    lines_not_understood: int = 0

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)

    def _int(self, key: str) -> int | None:
        value = self.get(key)
        return int(value) if value is not None and re.fullmatch(r"-?\d+", value) else None

    @property
    def host(self) -> str | None:
        return self.get("host")

    @property
    def release(self) -> str | None:
        return self.get("release")

    @property
    def nr_cpus(self) -> int | None:
        return self._int("nr_cpus")

    @property
    def total_memory_mib(self) -> int | None:
        return self._int("total_memory")

    @property
    def free_memory_mib(self) -> int | None:
        return self._int("free_memory")

    @property
    def xen_major(self) -> int | None:
        return self._int("xen_major")

    @property
    def xen_minor(self) -> int | None:
        return self._int("xen_minor")

    @property
    def xen_extra(self) -> str | None:
        return self.get("xen_extra")

    @property
    def xen_version(self) -> str | None:
        """``major.minor`` + ``extra`` as Xen composes it (``3.3.0``, ``3.0-devel``);
        None unless all three are given."""
        major, minor, extra = self.xen_major, self.xen_minor, self.xen_extra
        if major is None or minor is None or extra is None:
            return None
        return f"{major}.{minor}{extra}"


# A key starts with a letter: a wrapped value such as "7793:090e44133d40" is no key.
_INFO_RE = re.compile(r"^(?P<key>[a-z][a-z_0-9]*)\s*:(?P<value>.*)$")


def parse_xm_info(text: str) -> XmInfo:
    """Parse ``xm info`` (Xen 3.0-3.4): ``key : value`` lines, in any indentation."""
    fields: list[tuple[str, str]] = []
    unknown = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _INFO_RE.match(line)
        if m is None:
            unknown += 1
            continue
        fields.append((m.group("key"), m.group("value").strip()))
    return XmInfo(tuple(fields), unknown)


# --- xm list -l (SXP) ------------------------------------------------------------------

Sxp: TypeAlias = "str | list[Sxp]"


@dataclass(frozen=True, slots=True)
class XmDisk:
    uname: str | None
    """The backend, as in the config: ``phy:/dev/sdb7``, ``file:/path``, ``tap:aio:/path``."""
    dev: str | None
    """The guest's device, e.g. ``xvda:disk`` or ``hda``."""
    mode: str | None

    @property
    def target(self) -> str | None:
        """The path in ``uname`` without its ``phy:``/``file:``/``tap:aio:`` prefix."""
        if self.uname is None:
            return None
        m = re.match(r"^(?:phy|file|tap:\w+|tap):(?P<path>.*)$", self.uname)
        return m.group("path") if m else self.uname


@dataclass(frozen=True, slots=True)
class XmNic:
    mac: str | None
    bridge: str | None


@dataclass(frozen=True, slots=True)
class XmDomainConfig:
    """One ``(domain ...)`` of ``xm list -l``."""

    name: str | None
    domid: int | None
    uuid: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    max_memory_mib: int | None = None
    state: XmState | None = None
    image: str | None = None
    """``linux`` (paravirtualised) or ``hvm``: the head of the ``(image ...)`` entry."""
    disks: tuple[XmDisk, ...] = ()
    nics: tuple[XmNic, ...] = ()
    complete: bool = True
    """False when the text ends before the domain's closing parenthesis."""


@dataclass(frozen=True, slots=True)
class XmListLong:
    domains: tuple[XmDomainConfig, ...]
    lines_not_understood: int = 0


_TOKEN_RE = re.compile(
    r"""\s+ | (?P<open>\() | (?P<close>\)) | '(?P<sq>(?:[^'\\]|\\.)*)'
      | "(?P<dq>(?:[^"\\]|\\.)*)" | (?P<atom>[^\s()'"]+)""",
    re.VERBOSE,
)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, value) of SXP tokens; kind is ``(``, ``)`` or ``atom``. An unmatched quote
    ends the text (a truncated paste)."""
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            return
        pos = m.end()
        if m.group("open"):
            yield "(", "("
        elif m.group("close"):
            yield ")", ")"
        elif m.group("sq") is not None or m.group("dq") is not None:
            quoted = m.group("sq") if m.group("sq") is not None else m.group("dq")
            yield "atom", re.sub(r"\\(.)", r"\1", quoted)
        elif m.group("atom"):
            yield "atom", m.group("atom")


def _read_sxp(text: str) -> tuple[Sxp | None, bool]:
    """The first list in ``text`` and whether it was closed."""
    stack: list[list[Sxp]] = []
    for kind, value in _tokens(text):
        if kind == "(":
            node: list[Sxp] = []
            if stack:
                stack[-1].append(node)
            stack.append(node)
        elif kind == ")":
            if not stack:
                continue
            done = stack.pop()
            if not stack:
                return done, True
        elif stack:
            stack[-1].append(value)
    return (stack[0], False) if stack else (None, False)


def _children(node: Sxp, key: str) -> list[list[Sxp]]:
    if not isinstance(node, list):
        return []
    return [c for c in node[1:] if isinstance(c, list) and c and c[0] == key]


def _value(node: Sxp, key: str) -> str | None:
    for child in _children(node, key):
        if len(child) > 1 and isinstance(child[1], str):
            return child[1]
        return None
    return None


def _int_value(node: Sxp, key: str) -> int | None:
    value = _value(node, key)
    return int(value) if value is not None and re.fullmatch(r"-?\d+", value) else None


def _domain(node: Sxp, complete: bool) -> XmDomainConfig:
    disks: list[XmDisk] = []
    nics: list[XmNic] = []
    for device in _children(node, "device"):
        for dev in device[1:]:
            if not isinstance(dev, list) or not dev or not isinstance(dev[0], str):
                continue
            if dev[0] in ("vbd", "tap", "tap2"):
                disks.append(XmDisk(_value(dev, "uname"), _value(dev, "dev"), _value(dev, "mode")))
            elif dev[0] == "vif":
                nics.append(XmNic(_value(dev, "mac"), _value(dev, "bridge")))
    image = next(
        (
            c[0]
            for i in _children(node, "image")
            for c in i[1:]
            if isinstance(c, list) and c and isinstance(c[0], str)
        ),
        None,
    )
    state = _value(node, "state")
    return XmDomainConfig(
        name=_value(node, "name"),
        domid=_int_value(node, "domid"),
        uuid=_value(node, "uuid"),
        vcpus=_int_value(node, "vcpus"),
        memory_mib=_int_value(node, "memory"),
        max_memory_mib=_int_value(node, "maxmem"),
        state=XmState.parse(state) if state is not None else None,
        image=image,
        disks=tuple(disks),
        nics=tuple(nics),
        complete=complete,
    )


def parse_xm_list_long(text: str) -> XmListLong:
    """Parse ``xm list -l [DOMAIN...]`` (xend's SXP, Xen 3.0-3.4): each ``(domain``
    at the start of a line begins a domain that runs to its closing parenthesis."""
    lines = text.splitlines()
    domains: list[XmDomainConfig] = []
    unknown = 0
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not re.match(r"^\(domain(?:\s|\(|$)", line):
            unknown += 1 if line else 0
            i += 1
            continue
        # Take lines until the parentheses balance (quotes may hold parentheses).
        depth, j = 0, i
        while j < len(lines):
            for kind, _ in _tokens(lines[j]):
                depth += {"(": 1, ")": -1}.get(kind, 0)
            j += 1
            if depth <= 0:
                break
        node, complete = _read_sxp("\n".join(lines[i:j]))
        if node is not None:
            domains.append(_domain(node, complete))
        i = j
    return XmListLong(tuple(domains), unknown)


# --- xm migrate ------------------------------------------------------------------------


class XmMigrateError(enum.Enum):
    """What an ``Error:`` line of ``xm migrate`` says went wrong."""

    UNREACHABLE = "unreachable"
    """``can't connect: ...``: the destination's relocation server (xend-relocation-port,
    8002) did not answer; nothing was sent (XendDomain.domain_migrate)."""
    SAVE_FAILED = "save-failed"
    """``.../xc_save ... failed``: the memory copy failed; xend resumes the guest at the
    source (XendCheckpoint.save)."""
    NOT_RUNNING = "not-running"
    NO_SUCH_DOMAIN = "no-such-domain"
    PRIVILEGED = "privileged"
    XEND_DOWN = "xend-down"
    """xm could not reach the local xend at all."""
    NOT_ROOT = "not-root"
    OTHER = "other"


# (pattern, kind, guest left running at the source?) - messages of xend and xm (3.4.4).
_ERRORS: tuple[tuple[re.Pattern[str], XmMigrateError, bool | None], ...] = (
    (re.compile(r"^can't connect: "), XmMigrateError.UNREACHABLE, True),
    (re.compile(r"\bxc_save\b.* failed(?:: popen failed)?$"), XmMigrateError.SAVE_FAILED, True),
    (re.compile(r"^Domain is not running"), XmMigrateError.NOT_RUNNING, None),
    (re.compile(r"^Domain '.*' does not exist\.$"), XmMigrateError.NO_SUCH_DOMAIN, None),
    (re.compile(r"^Cannot migrate privileged domain"), XmMigrateError.PRIVILEGED, None),
    (re.compile(r"^Unable to connect to xend"), XmMigrateError.XEND_DOWN, None),
    (re.compile(r"^Most commands need root access"), XmMigrateError.NOT_ROOT, None),
)
# The usage of `xm migrate` that follows most errors (xm/migrate.py gopts): known, skipped.
_USAGE_RE = re.compile(
    r"^(?:Usage: xm migrate .*|Migrate a domain to another machine\.|Options:|"
    r"-\w(?:=\w+)?, --\w+(?:=\w+)?(?:\s+.*)?|Use (?:live migration|specified .*|ssl .*)\.?|"
    r"Print this help\.)$"
)
_CRASH_RE = re.compile(r"^Xend has probably crashed!")


@dataclass(frozen=True, slots=True)
class XmMigrateResult:
    ok: bool
    """True when xm printed no error and (if given) exited 0."""
    error: str | None = None
    """The message after ``Error:`` (or xm's own failure line), as printed."""
    kind: XmMigrateError | None = None
    resumed_at_source: bool | None = None
    """True when xend's source says the guest keeps running at the source after this
    error; None when the message does not say."""
    exit_status: int | None = None
    lines_not_understood: int = 0


class XmMigrateParser:
    """Reader of ``xm migrate`` output (both streams), as :class:`MigrateUpdate` s.

    xm reports no progress: the only updates are the failure (from an ``Error:`` line)
    and the end (:meth:`finish`, with xm's exit status). :meth:`opening` is the update a
    driver publishes when it starts xm, saying that no progress will come.
    """

    def __init__(self) -> None:
        self.phase = MigratePhase.STARTED
        self.history: list[MigrateUpdate] = []
        self.lines_not_understood = 0
        # xm's messages are whole lines of their own: none can start right and go wrong
        self.malformed: list[ParseError] = []
        self.kind: XmMigrateError | None = None
        self.receiver_domid: int | None = None  # xm never names the target's domain
        self._result: MigrateUpdate | None = None

    @property
    def result(self) -> MigrateUpdate | None:
        return self._result

    @staticmethod
    def opening() -> MigrateUpdate:
        return MigrateUpdate(
            phase=MigratePhase.STARTED,
            event="no-progress",
            line="xm migrate reports no progress; the total time is measured around it",
            side="sender",
        )

    def feed(self, line: str) -> list[MigrateUpdate]:
        text = line.strip()
        if not text or _USAGE_RE.match(text):
            return []  # xm's usage text after an error says nothing more
        if text.startswith("Error:"):
            message = text[len("Error:") :].strip()
        elif _CRASH_RE.match(text):
            message = text
        else:
            self.lines_not_understood += 1
            return []
        if self._result is not None:
            return []  # the first error is the one xm failed on
        kind, resumed = XmMigrateError.OTHER, None
        for pattern, found, left_running in _ERRORS:
            if pattern.search(message):
                kind, resumed = found, left_running
                break
        self.kind = kind
        return [self._final(MigratePhase.FAILED, kind.value, text, message, resumed)]

    def finish(self, exit_status: int | None) -> list[MigrateUpdate]:
        """The end: nothing when an error was already read, else success (exit 0 or
        unknown, as xm prints nothing on success) or a failure without message."""
        if self._result is not None:
            return []
        if exit_status in (0, None):
            return [self._final(MigratePhase.DONE, "exit", "xm migrate printed no error")]
        why = f"xm exited with status {exit_status}"
        return [self._final(MigratePhase.FAILED, "exit", why, why, None)]

    def _final(
        self,
        phase: MigratePhase,
        event: str,
        line: str,
        error: str | None = None,
        resumed: bool | None = None,
    ) -> MigrateUpdate:
        self.phase = phase
        update = MigrateUpdate(
            phase=phase,
            event=event,
            line=line,
            side="sender",
            error=error,
            resumed_at_source=resumed,
            final=True,
        )
        self.history.append(update)
        self._result = update
        return update


def parse_xm_migrate(text: str, exit_status: int | None = None) -> XmMigrateResult:
    """Read a whole ``xm migrate`` transcript (stdout and stderr, in any order)."""
    parser = XmMigrateParser()
    for line in text.splitlines():
        parser.feed(line)
    parser.finish(exit_status)
    final = parser.result
    assert final is not None  # finish() always leaves one
    ok = final.phase is MigratePhase.DONE
    return XmMigrateResult(
        ok=ok,
        error=None if ok else final.error,
        kind=parser.kind,
        resumed_at_source=None if ok else final.resumed_at_source,
        exit_status=exit_status,
        lines_not_understood=parser.lines_not_understood,
    )
