"""IET (iSCSI Enterprise Target): ``/proc/net/iet/*`` parsers, ``ietd.conf`` parse/render.

IET is what the reference study ran (Gentoo storage node); it is unmaintained and not in
Debian 12, so nothing here could run. Formats: ``ietd.conf(5)`` and ``ietadm(8)``, the
kernel's ``volume.c``/``session.c`` seq_file output as quoted in public notes (see
``tests/data/iet/README.md``).

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

import re
from dataclasses import dataclass, field

from backend.drivers import ParseError

__all__ = [
    "IetConf",
    "IetConnection",
    "IetLun",
    "IetSession",
    "IetSessionTarget",
    "IetTarget",
    "IetUser",
    "IetVolume",
    "IetVolumeLun",
    "parse_ietd_conf",
    "parse_proc_session",
    "parse_proc_volume",
    "remove_ietd_target",
    "render_ietd_conf",
    "render_ietd_target",
    "upsert_ietd_target",
]


# --- /proc/net/iet -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IetVolumeLun:
    lun: int
    state: int
    iotype: str
    iomode: str
    blocks: int
    blocksize: int
    path: str

    @property
    def size_bytes(self) -> int:
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


def _tokens(body: str, raw: str, lineno: int, last: str | None = None) -> dict[str, str]:
    """Split ``k:v k:v ...``; the ``last`` key (``path``) runs to the end of the line."""
    rest = ""
    if last is not None:
        head, sep, rest = body.partition(f" {last}:")
        if not sep:
            raise ParseError(f"no '{last}:' field", raw, lineno)
        body = head
    out: dict[str, str] = {}
    for token in body.split():
        key, sep, value = token.partition(":")
        if not sep or not key:
            raise ParseError(f"expected key:value, got {token!r}", raw, lineno)
        out[key] = value
    if last is not None:
        out[last] = rest
    return out


def _int(fields: dict[str, str], key: str, raw: str, lineno: int) -> int:
    try:
        return int(fields[key])
    except (KeyError, ValueError):
        raise ParseError(f"missing or non-numeric '{key}'", raw, lineno) from None


def _depth(raw: str, lineno: int) -> int:
    depth = len(raw) - len(raw.lstrip("\t"))
    if raw[depth : depth + 1] == " ":
        raise ParseError("indented with spaces; /proc/net/iet uses TABs", raw, lineno)
    return depth


def parse_proc_volume(text: str) -> list[IetVolume]:
    """Parse ``/proc/net/iet/volume``."""
    volumes: list[IetVolume] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        depth = _depth(raw, lineno)
        body = raw.strip()
        if depth == 0:
            f = _tokens(body, raw, lineno)
            if "name" not in f:
                raise ParseError("target line without 'name:'", raw, lineno)
            volumes.append(IetVolume(_int(f, "tid", raw, lineno), f["name"]))
        elif depth == 1 and volumes:
            f = _tokens(body, raw, lineno, last="path")
            lun = IetVolumeLun(
                lun=_int(f, "lun", raw, lineno),
                state=_int(f, "state", raw, lineno),
                iotype=f.get("iotype", ""),
                iomode=f.get("iomode", ""),
                blocks=_int(f, "blocks", raw, lineno),
                blocksize=_int(f, "blocksize", raw, lineno),
                path=f["path"],
            )
            v = volumes[-1]
            volumes[-1] = IetVolume(v.tid, v.name, (*v.luns, lun))
        else:
            raise ParseError("unexpected line in /proc/net/iet/volume", raw, lineno)
    return volumes


def parse_proc_session(text: str) -> list[IetSessionTarget]:
    """Parse ``/proc/net/iet/session``."""
    targets: list[IetSessionTarget] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        depth = _depth(raw, lineno)
        f = _tokens(raw.strip(), raw, lineno)
        if depth == 0 and "name" in f:
            targets.append(IetSessionTarget(_int(f, "tid", raw, lineno), f["name"]))
        elif depth == 1 and targets and "initiator" in f:
            t = targets[-1]
            session = IetSession(_int(f, "sid", raw, lineno), f["initiator"])
            targets[-1] = IetSessionTarget(t.tid, t.name, (*t.sessions, session))
        elif depth == 2 and targets and targets[-1].sessions and "ip" in f:
            conn = IetConnection(
                cid=_int(f, "cid", raw, lineno),
                ip=f["ip"],
                state=f.get("state", ""),
                header_digest=f.get("hd", "none"),
                data_digest=f.get("dd", "none"),
            )
            t = targets[-1]
            s = t.sessions[-1]
            s = IetSession(s.sid, s.initiator, (*s.connections, conn))
            targets[-1] = IetSessionTarget(t.tid, t.name, (*t.sessions[:-1], s))
        else:
            raise ParseError("unexpected line in /proc/net/iet/session", raw, lineno)
    return targets


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
