"""IET (iSCSI Enterprise Target): ``/proc/net/iet/*`` parsers, ``ietd.conf`` parse/render.

IET is what the reference study ran (Gentoo storage node); it is unmaintained and not in
Debian 12, and its kernel module cannot load here. Formats: ``ietd.conf(5)`` and
``ietadm(8)``, the kernel's ``volume.c``/``session.c`` seq_file output as quoted in
public notes, and ``ietadm`` itself (usr/ietadm.c of 0.4.12 and 1.4.19, built from
source here: its replies without ietd are real captures; see ``tests/data/iet/README.md``).

* ``/proc/net/iet/volume`` and ``session`` are ``key:value`` tokens; targets at column
  0, LUNs/sessions one TAB in, connections two TABs in. ``path:`` is last and is taken
  to the end of the line.
* ``ietd.conf``: ``Target <name>`` starts a block that runs to the next ``Target``;
  keywords before the first target are global (discovery CHAP, iSNS). ``#`` comments
  only at the start of a line. ``Lun <n> Path=...,Type=fileio|blockio|nullio[,...]``.
* ietadm changes are lost when ietd restarts, so a driver must keep ``ietd.conf`` in
  step: :func:`upsert_ietd_target` rewrites one Target block and keeps the rest of the
  file (comments, other targets) byte for byte.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from backend.drivers import ParseError

__all__ = [
    "IetConf",
    "IetConnection",
    "IetLun",
    "IetProc",
    "IetSession",
    "IetSessionTarget",
    "IetTarget",
    "IetUser",
    "IetVolume",
    "IetVolumeLun",
    "IetadmAccount",
    "IetadmAccounts",
    "IetadmKind",
    "IetadmOutcome",
    "IetadmParams",
    "classify_ietadm",
    "parse_ietadm_accounts",
    "parse_ietadm_params",
    "parse_ietadm_version",
    "parse_ietd_conf",
    "parse_proc_session",
    "parse_proc_volume",
    "read_proc_session",
    "read_proc_volume",
    "remove_ietd_target",
    "render_ietd_conf",
    "render_ietd_target",
    "upsert_ietd_target",
]


# --- /proc/net/iet -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IetVolumeLun:
    lun: int
    state: int | None
    iotype: str
    iomode: str
    blocks: int | None
    blocksize: int | None
    path: str | None
    """``None`` when the line has no ``path:`` (never guessed from other fields)."""

    @property
    def size_bytes(self) -> int | None:
        if self.blocks is None or self.blocksize is None:
            return None
        return self.blocks * self.blocksize


@dataclass(frozen=True, slots=True)
class IetVolume:
    tid: int
    name: str
    luns: tuple[IetVolumeLun, ...] = ()


@dataclass(frozen=True, slots=True)
class IetConnection:
    cid: int
    ip: str
    state: str
    header_digest: str = "none"
    data_digest: str = "none"


@dataclass(frozen=True, slots=True)
class IetSession:
    sid: int
    initiator: str
    connections: tuple[IetConnection, ...] = ()


@dataclass(frozen=True, slots=True)
class IetSessionTarget:
    tid: int
    name: str
    sessions: tuple[IetSession, ...] = ()

    @property
    def initiators(self) -> tuple[str, ...]:
        return tuple(s.initiator for s in self.sessions)


def _tokens(body: str, last: str | None = None) -> dict[str, str]:
    """Split ``k:v k:v ...``; the ``last`` key (``path``) runs to the end of the line.

    Tokens that are not ``k:v`` are dropped (the other fields still count).
    """
    rest: str | None = None
    if last is not None:
        head, sep, tail = body.partition(f" {last}:")
        if sep:
            body, rest = head, tail
    out: dict[str, str] = {}
    for token in body.split():
        key, sep, value = token.partition(":")
        if sep and key:
            out[key] = value
    if last is not None and rest is not None:
        out[last] = rest
    return out


def _num(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key, "")
    return int(value) if value.isdigit() else None


@dataclass(frozen=True, slots=True)
class IetProc:
    """What a ``/proc/net/iet`` parser read, and how many lines it could not place."""

    volumes: tuple[IetVolume, ...] = ()
    sessions: tuple[IetSessionTarget, ...] = ()
    unparsed: int = 0


def parse_proc_volume(text: str) -> list[IetVolume]:
    """Parse ``/proc/net/iet/volume`` (IET 0.4.x and 1.4.x, kernel ``volume.c``).

    Each line is read by its first key (``tid:`` target, ``lun:`` LUN), not by its TABs,
    so a copy whose TABs became spaces parses the same. Lines it cannot place are
    skipped; :func:`read_proc_volume` also counts them.
    """
    return list(read_proc_volume(text).volumes)


def read_proc_volume(text: str) -> IetProc:
    """:func:`parse_proc_volume` with the count of lines not understood."""
    volumes: list[IetVolume] = []
    unparsed = 0
    for raw in text.splitlines():
        body = raw.strip()
        if not body:
            continue
        first = body.split(":", 1)[0]
        if first == "tid":
            f = _tokens(body)
            tid = _num(f, "tid")
            if tid is not None and "name" in f:
                volumes.append(IetVolume(tid, f["name"]))
                continue
        elif first == "lun" and volumes:
            f = _tokens(body, last="path")
            number = _num(f, "lun")
            if number is not None:
                lun = IetVolumeLun(
                    lun=number,
                    state=_num(f, "state"),
                    iotype=f.get("iotype", ""),
                    iomode=f.get("iomode", ""),
                    blocks=_num(f, "blocks"),
                    blocksize=_num(f, "blocksize"),
                    path=f.get("path"),
                )
                v = volumes[-1]
                volumes[-1] = IetVolume(v.tid, v.name, (*v.luns, lun))
                continue
        unparsed += 1
    return IetProc(volumes=tuple(volumes), unparsed=unparsed)


def parse_proc_session(text: str) -> list[IetSessionTarget]:
    """Parse ``/proc/net/iet/session`` (IET 0.4.x and 1.4.x, kernel ``session.c``).

    Read by first key (``tid:``, ``sid:``, ``cid:``), not TABs; lines it cannot place are
    skipped (:func:`read_proc_session` counts them).
    """
    return list(read_proc_session(text).sessions)


def read_proc_session(text: str) -> IetProc:
    """:func:`parse_proc_session` with the count of lines not understood."""
    targets: list[IetSessionTarget] = []
    unparsed = 0
    for raw in text.splitlines():
        body = raw.strip()
        if not body:
            continue
        f = _tokens(body)
        first = body.split(":", 1)[0]
        tid, sid, cid = _num(f, "tid"), _num(f, "sid"), _num(f, "cid")
        if first == "tid" and tid is not None and "name" in f:
            targets.append(IetSessionTarget(tid, f["name"]))
        elif first == "sid" and sid is not None and targets and "initiator" in f:
            t = targets[-1]
            session = IetSession(sid, f["initiator"])
            targets[-1] = IetSessionTarget(t.tid, t.name, (*t.sessions, session))
        elif first == "cid" and cid is not None and targets and targets[-1].sessions:
            conn = IetConnection(
                cid=cid,
                ip=f.get("ip", ""),
                state=f.get("state", ""),
                header_digest=f.get("hd", "none"),
                data_digest=f.get("dd", "none"),
            )
            t = targets[-1]
            s = t.sessions[-1]
            s = IetSession(s.sid, s.initiator, (*s.connections, conn))
            targets[-1] = IetSessionTarget(t.tid, t.name, (*t.sessions[:-1], s))
        else:
            unparsed += 1
    return IetProc(sessions=tuple(targets), unparsed=unparsed)


# --- ietd.conf ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IetUser:
    user: str
    password: str = field(repr=False)
    """Kept out of repr: models end up in logs, secrets must not (DESIGN.md)."""


@dataclass(frozen=True, slots=True)
class IetLun:
    lun: int
    path: str
    type: str = "fileio"
    """``fileio``, ``blockio`` or ``nullio``."""
    params: tuple[tuple[str, str], ...] = ()
    """Other ``Key=value`` options in order (``ScsiId``, ``ScsiSN``, ``IOMode``...)."""


@dataclass(frozen=True, slots=True)
class IetTarget:
    name: str
    luns: tuple[IetLun, ...] = ()
    incoming_users: tuple[IetUser, ...] = ()
    outgoing_user: IetUser | None = None
    alias: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    """Other keywords in order, e.g. ``("MaxConnections", "1")``."""


@dataclass(frozen=True, slots=True)
class IetConf:
    targets: tuple[IetTarget, ...] = ()
    discovery_incoming_users: tuple[IetUser, ...] = ()
    """Global ``IncomingUser`` lines: CHAP for discovery sessions."""
    discovery_outgoing_user: IetUser | None = None
    global_params: tuple[tuple[str, str], ...] = ()
    """Other keywords before the first Target (``iSNSServer``, ``iSNSAccessControl``)."""

    def target(self, name: str) -> IetTarget | None:
        return next((t for t in self.targets if t.name == name), None)


_KEYWORD_RE = re.compile(r"^\s*(?P<key>[A-Za-z][\w.]*)(?:\s+(?P<value>.*?))?\s*$")
_LUN_RE = re.compile(r"^(?P<n>\d+)\s+(?P<opts>\S+)$")
_TARGET_LINE_RE = re.compile(r"^\s*Target\s+(?P<name>\S+)\s*$", re.IGNORECASE)


def _is_comment(raw: str) -> bool:
    return raw.lstrip().startswith("#")


def _lun(value: str, raw: str, lineno: int) -> IetLun:
    m = _LUN_RE.match(value)
    if not m:
        raise ParseError("expected 'Lun <n> Path=...,Type=...'", raw, lineno)
    opts: list[tuple[str, str]] = []
    for item in m.group("opts").split(","):
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ParseError(f"bad Lun option {item!r}", raw, lineno)
        opts.append((key, val))
    lookup = {k.lower(): v for k, v in opts}
    if "path" not in lookup:
        raise ParseError("Lun without Path=", raw, lineno)
    return IetLun(
        lun=int(m.group("n")),
        path=lookup["path"],
        type=lookup.get("type", "fileio"),
        params=tuple((k, v) for k, v in opts if k.lower() not in ("path", "type")),
    )


def _user(value: str, raw: str, lineno: int) -> IetUser:
    parts = value.split()
    if len(parts) != 2:
        raise ParseError("expected '<user> <password>'", raw, lineno)
    return IetUser(parts[0], parts[1])


@dataclass(slots=True)
class _TargetBuilder:
    name: str
    luns: list[IetLun] = field(default_factory=list)
    incoming: list[IetUser] = field(default_factory=list)
    outgoing: IetUser | None = None
    alias: str | None = None
    params: list[tuple[str, str]] = field(default_factory=list)

    def build(self) -> IetTarget:
        return IetTarget(
            self.name,
            tuple(self.luns),
            tuple(self.incoming),
            self.outgoing,
            self.alias,
            tuple(self.params),
        )


def parse_ietd_conf(text: str) -> IetConf:
    """Parse ``/etc/ietd.conf`` (or ``/etc/iet/ietd.conf``)."""
    targets: list[IetTarget] = []
    global_params: list[tuple[str, str]] = []
    discovery = _TargetBuilder("")  # collects the global IncomingUser/OutgoingUser
    cur: _TargetBuilder | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or _is_comment(raw):
            continue
        m = _KEYWORD_RE.match(raw)
        if not m or m.group("value") is None:
            raise ParseError("expected '<Keyword> <value>'", raw, lineno)
        key, value = m.group("key"), m.group("value")
        lkey = key.lower()
        if lkey == "target":
            if len(value.split()) != 1:
                raise ParseError("expected 'Target <iqn>'", raw, lineno)
            if cur is not None:
                targets.append(cur.build())
            cur = _TargetBuilder(value)
        elif cur is None and lkey == "incominguser":
            discovery.incoming.append(_user(value, raw, lineno))
        elif cur is None and lkey == "outgoinguser":
            discovery.outgoing = _user(value, raw, lineno)
        elif cur is None:
            global_params.append((key, value))
        elif lkey == "lun":
            cur.luns.append(_lun(value, raw, lineno))
        elif lkey == "incominguser":
            cur.incoming.append(_user(value, raw, lineno))
        elif lkey == "outgoinguser":
            cur.outgoing = _user(value, raw, lineno)
        elif lkey == "alias":
            cur.alias = value
        else:
            cur.params.append((key, value))
    if cur is not None:
        targets.append(cur.build())
    return IetConf(
        tuple(targets), tuple(discovery.incoming), discovery.outgoing, tuple(global_params)
    )


def render_ietd_target(target: IetTarget, indent: str = "    ") -> str:
    """Render one ``Target`` block (ends with a newline); inverse of the parser."""
    if not target.name or any(c.isspace() for c in target.name):
        raise ValueError(f"not a usable target name: {target.name!r}")
    lines = [f"Target {target.name}"]
    for u in target.incoming_users:
        lines.append(f"{indent}IncomingUser {_check_word(u.user)} {_check_word(u.password)}")
    if target.outgoing_user is not None:
        u = target.outgoing_user
        lines.append(f"{indent}OutgoingUser {_check_word(u.user)} {_check_word(u.password)}")
    for lun in target.luns:
        opts = [("Path", lun.path), ("Type", lun.type), *lun.params]
        for key, value in opts:
            if not value or any(c in value for c in ", \t\n=") or "," in key:
                raise ValueError(f"Lun {lun.lun} option {key}={value!r} cannot be written")
        lines.append(f"{indent}Lun {lun.lun} " + ",".join(f"{k}={v}" for k, v in opts))
    if target.alias is not None:
        lines.append(f"{indent}Alias {_check_word(target.alias)}")
    for key, value in target.params:
        lines.append(f"{indent}{key} {value}")
    return "\n".join(lines) + "\n"


def _check_word(value: str) -> str:
    if not value or any(c.isspace() for c in value) or value.startswith("#"):
        raise ValueError(f"{value!r} cannot be written to ietd.conf")
    return value


def render_ietd_conf(conf: IetConf) -> str:
    """Render a whole file: global keywords, then the Target blocks."""
    users = [
        f"IncomingUser {_check_word(u.user)} {_check_word(u.password)}\n"
        for u in conf.discovery_incoming_users
    ]
    if conf.discovery_outgoing_user is not None:
        u = conf.discovery_outgoing_user
        users.append(f"OutgoingUser {_check_word(u.user)} {_check_word(u.password)}\n")
    head = "".join(users) + "".join(f"{k} {v}\n" for k, v in conf.global_params)
    blocks = [render_ietd_target(t) for t in conf.targets]
    return head + ("\n" if head and blocks else "") + "\n".join(blocks)


def _target_spans(lines: list[str]) -> list[tuple[str, int, int]]:
    """(name, first line, end line exclusive) of each Target block, trailing blank and
    comment lines left outside the block (they usually introduce the next target)."""
    starts = [
        (m.group("name"), i)
        for i, line in enumerate(lines)
        if not _is_comment(line) and (m := _TARGET_LINE_RE.match(line))
    ]
    spans = []
    for k, (name, start) in enumerate(starts):
        end = starts[k + 1][1] if k + 1 < len(starts) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or _is_comment(lines[end - 1])):
            end -= 1
        spans.append((name, start, end))
    return spans


def upsert_ietd_target(text: str, target: IetTarget) -> str:
    """Replace the Target block named ``target.name`` in ``text``, or append it.

    Everything outside that block is kept exactly, so hand-written comments and other
    targets survive. The result parses back to a config holding ``target``.
    """
    lines = text.splitlines(keepends=True)
    block = render_ietd_target(target)
    for name, start, end in _target_spans([ln.rstrip("\n") for ln in lines]):
        if name == target.name:
            return "".join(lines[:start]) + block + "".join(lines[end:])
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block


def remove_ietd_target(text: str, name: str) -> str:
    """Drop the Target block called ``name`` (no change when it is absent)."""
    lines = text.splitlines(keepends=True)
    for block_name, start, end in _target_spans([ln.rstrip("\n") for ln in lines]):
        if block_name == name:
            # Also drop one blank separator line so blocks do not drift apart.
            if end < len(lines) and not lines[end].strip():
                end += 1
            return "".join(lines[:start]) + "".join(lines[end:])
    return text


# --- ietadm replies ------------------------------------------------------------------


class IetadmKind(enum.Enum):
    """What an ``ietadm`` exit means to a driver."""

    OK = "ok"
    NO_DAEMON = "ietd not running"  # ECONNREFUSED on ietd's control socket
    EXISTS = "already exists"  # EEXIST
    NOT_FOUND = "no such target, LUN or account"  # ENOENT
    BUSY = "in use"  # EBUSY: e.g. deleting a target with sessions
    BAD_REQUEST = "bad request"  # EINVAL, and ietadm's own usage errors
    FAILED = "failed"  # anything else, or an exit code that names no errno


@dataclass(frozen=True, slots=True)
class IetadmOutcome:
    exit_code: int
    errno: int | None
    """From the exit code (ietadm returns -errno: the shell sees 256 - errno) or from the
    ``ietd_request LINE CMD -ERRNO`` line of 0.4.12/0.4.13; ``None`` when neither says."""
    kind: IetadmKind
    message: str
    """The first stderr line ('' on success)."""
    unparsed: int = 0
    """stderr lines of no form this parser knows (skipped)."""

    @property
    def ok(self) -> bool:
        return self.kind is IetadmKind.OK


# 1.4.x (and 0.4.14+): "<strerror>." for an errno from ietd or the socket.
_STRERROR = {
    "Connection refused.": 111,
    "No such file or directory.": 2,
    "File exists.": 17,
    "Device or resource busy.": 16,
    "Invalid argument.": 22,
    "Operation not permitted.": 1,
    "No such device.": 19,
    "Cannot allocate memory.": 12,
    "Input/output error.": 5,
}
# 0.4.12/0.4.13 "ietd_request LINE CMD ERR"; all versions "ietd_request_send LINE RET ERR"...
_REQUEST_RE = re.compile(r"^(?P<fn>ietd_\w+) \d+(?: -?\d+)* (?P<err>-\d+)$")
# ietadm's own complaints (usr/ietadm.c), all exit -EINVAL.
_USAGE = (
    "You must specify the operation type",
    "Unknown parameter ",
    "Invalid ",
    "Username and password must be specified",
    "Username must be specified",
    "You need to specify a user and its password",
    "Ignoring specified password",
    "Unsupported",
    "unrecognized: ",
    "Try `",
    "Memory allocation failed",
)
_ERRNO_KIND = {
    111: IetadmKind.NO_DAEMON,
    17: IetadmKind.EXISTS,
    2: IetadmKind.NOT_FOUND,
    16: IetadmKind.BUSY,
    22: IetadmKind.BAD_REQUEST,
}


def classify_ietadm(exit_code: int, stderr: str = "") -> IetadmOutcome:
    """Map an ``ietadm`` exit status and stderr to an :class:`IetadmOutcome`.

    Reads IET 0.4.12-0.4.13 (errors as ``ietd_request 190 3 -1``, and ``-1`` is the
    return of ``connect()``, not an errno: exit 255, errno unknown) and 0.4.14-1.4.20
    (``Connection refused.``: ``strerror`` of the errno, exit 256 - errno).
    """
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if exit_code == 0:
        known = sum(1 for ln in lines if ln.startswith(_USAGE))  # "Ignoring ... password"
        return IetadmOutcome(0, 0, IetadmKind.OK, "", len(lines) - known)
    errno: int | None = None
    usage = False
    unparsed = 0
    for line in lines:
        if line in _STRERROR:
            errno = _STRERROR[line]
        elif m := _REQUEST_RE.match(line):
            err = -int(m.group("err"))
            # 0.4.12 reports connect()'s -1 here, which is not an errno.
            if err != 1 and errno is None:
                errno = err
        elif line.startswith(_USAGE):
            usage = True
        else:
            unparsed += 1
    if errno is None and 128 < exit_code < 255:
        errno = 256 - exit_code  # main() returned -errno
    if errno is not None:
        kind = _ERRNO_KIND.get(errno, IetadmKind.FAILED)
    else:
        kind = IetadmKind.BAD_REQUEST if usage else IetadmKind.FAILED
    return IetadmOutcome(exit_code, errno, kind, lines[0] if lines else "", unparsed)


@dataclass(frozen=True, slots=True)
class IetadmParams:
    """``ietadm --op show --tid=N [--sid=S]``: one ``Name=value`` line a parameter."""

    params: tuple[tuple[str, str], ...] = ()
    unparsed: int = 0

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


_PARAM_RE = re.compile(r"^(?P<key>[A-Za-z][\w.]*)\s*=\s*(?P<value>.*?)\s*$")


def parse_ietadm_params(text: str) -> IetadmParams:
    """Parse ``ietadm --op show --tid=N`` (target parameters) or ``... --sid=S`` (session).

    ``show_iscsi_param`` prints ``name=value`` per key, in every IET version; the key set
    grew (1.4.x adds ``Wthreads``, ``Type``, ``QueuedCommands``, ``NOPInterval``...).
    Other lines are skipped and counted.
    """
    params: list[tuple[str, str]] = []
    unparsed = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if m := _PARAM_RE.match(raw.strip()):
            params.append((m.group("key"), m.group("value")))
        else:
            unparsed += 1
    return IetadmParams(tuple(params), unparsed)


@dataclass(frozen=True, slots=True)
class IetadmAccount:
    direction: str
    """``Incoming`` or ``Outgoing``."""
    user: str
    password: str | None = field(default=None, repr=False)
    """Only when one account was asked for (``--params=IncomingUser=NAME``)."""


@dataclass(frozen=True, slots=True)
class IetadmAccounts:
    accounts: tuple[IetadmAccount, ...] = ()
    unparsed: int = 0


_ACCOUNT_RE = re.compile(r"^(?P<dir>Incoming|Outgoing)User\s+(?P<user>\S+)(?:\s+(?P<pw>\S+))?$")


def parse_ietadm_accounts(text: str) -> IetadmAccounts:
    """Parse ``ietadm --op show [--tid=N] --user [--params=IncomingUser=NAME]``.

    ``show_account`` prints ``IncomingUser NAME [PASSWORD]`` / ``OutgoingUser ...``
    (IET 0.4.14 and later; 0.4.12 answers ``Unsupported.``). Other lines are skipped and
    counted; passwords are kept out of ``repr``.
    """
    accounts: list[IetadmAccount] = []
    unparsed = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if m := _ACCOUNT_RE.match(raw.strip()):
            accounts.append(IetadmAccount(m.group("dir"), m.group("user"), m.group("pw")))
        else:
            unparsed += 1
    return IetadmAccounts(tuple(accounts), unparsed)


_VERSION_RE = re.compile(r"^ietadm version (?P<version>\S+)$")


def parse_ietadm_version(text: str) -> str | None:
    """``ietadm --version``: ``ietadm version 1.4.19`` -> ``"1.4.19"``; ``None`` if absent."""
    for raw in text.splitlines():
        if m := _VERSION_RE.match(raw.strip()):
            return m.group("version")
    return None
