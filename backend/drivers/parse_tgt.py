"""Parsers for tgt's ``tgtadm`` (the Linux SCSI target framework, userspace tgtd).

Formats were captured from tgt 1.0.85 (Debian 12) into ``tests/data/tgt``; see its
README. What matters for the lab:

* ``--op show --mode target`` is an indented tree, 4 spaces a level. A target with no
  session has an empty ``I_T nexus information:`` section. No targets: empty output.
* tgt always has LUN 0 (type ``controller``); the data disk is LUN 1.
* ``Size:`` is in decimal MB, *rounded* (tgt's ``print_disksize``): 64 MiB shows as 67,
  32 MiB as 34. Use the backing file for exact sizes.
* ``--op show --mode target --tid N`` does not print the target: it prints the
  target's iSCSI parameters as ``key=value`` lines (:func:`parse_target_params`).
* Every management error exits 22 (EINVAL) with ``tgtadm: <reason>`` on stderr; no
  daemon on the control port exits 107 (ENOTCONN). :func:`classify_tgtadm` maps them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from backend.drivers import ParseError

__all__ = [
    "TgtAccount",
    "TgtConnection",
    "TgtLun",
    "TgtNexus",
    "TgtSession",
    "TgtTarget",
    "TgtadmError",
    "TgtadmOutcome",
    "classify_tgtadm",
    "parse_show_account",
    "parse_show_conn",
    "parse_show_target",
    "parse_target_params",
]

_INDENT = 4


@dataclass(frozen=True, slots=True)
class TgtConnection:
    cid: int
    ip_address: str | None


@dataclass(frozen=True, slots=True)
class TgtNexus:
    """One I_T nexus (an initiator's session with the target)."""

    nexus_id: int
    initiator: str
    alias: str | None
    connections: tuple[TgtConnection, ...]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(c.ip_address for c in self.connections if c.ip_address)


@dataclass(frozen=True, slots=True)
class TgtLun:
    lun: int
    type: str
    size_mb: int
    """Decimal megabytes, rounded by tgt (64 MiB -> 67)."""
    block_size: int
    backing_store_type: str
    backing_store_path: str | None
    """``None`` for the controller LUN (tgt prints ``None``)."""
    scsi_id: str = ""
    scsi_sn: str = ""
    online: bool = True
    readonly: bool = False
    removable: bool = False
    backing_store_flags: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    """Fields this parser has no attribute for, in order (newer tgt versions add some)."""

    @property
    def is_controller(self) -> bool:
        return self.type == "controller"


@dataclass(frozen=True, slots=True)
class TgtAccount:
    user: str
    outgoing: bool = False


@dataclass(frozen=True, slots=True)
class TgtTarget:
    tid: int
    iqn: str
    driver: str = ""
    state: str = ""
    nexuses: tuple[TgtNexus, ...] = ()
    luns: tuple[TgtLun, ...] = ()
    accounts: tuple[TgtAccount, ...] = ()
    acls: tuple[str, ...] = ()
    """Initiator addresses, initiator names or ``ALL``."""

    @property
    def initiators(self) -> tuple[str, ...]:
        return tuple(n.initiator for n in self.nexuses)

    @property
    def data_luns(self) -> tuple[TgtLun, ...]:
        return tuple(lun for lun in self.luns if not lun.is_controller)

    def lun(self, number: int) -> TgtLun | None:
        return next((lun for lun in self.luns if lun.lun == number), None)


@dataclass(frozen=True, slots=True)
class TgtSession:
    """One entry of ``--op show --mode conn --tid N``."""

    session_id: int
    connections: tuple[tuple[int, str, str | None], ...]
    """(cid, initiator, ip address) per connection."""


# --- indentation-aware line reader -------------------------------------------------


@dataclass(slots=True)
class _Line:
    lineno: int
    level: int
    text: str
    raw: str


def _lines(text: str) -> Iterator[_Line]:
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        stripped = raw.lstrip(" ")
        indent = len(raw) - len(stripped)
        if indent % _INDENT or raw.startswith("\t"):
            raise ParseError("indentation is not a multiple of 4 spaces", raw, lineno)
        # tgt prints "Backing store flags: " with a trailing space; keep values clean.
        yield _Line(lineno, indent // _INDENT, stripped.rstrip(), raw)


def _key_value(line: _Line) -> tuple[str, str]:
    key, sep, value = line.text.partition(":")
    if not sep or not key:
        raise ParseError("expected 'Key: value'", line.raw, line.lineno)
    return key.strip(), value.strip()


def _int(value: str, line: _Line) -> int:
    try:
        return int(value)
    except ValueError:
        raise ParseError(f"expected a number, got {value!r}", line.raw, line.lineno) from None


def _yes(value: str, line: _Line) -> bool:
    if value not in ("Yes", "No"):
        raise ParseError(f"expected Yes or No, got {value!r}", line.raw, line.lineno)
    return value == "Yes"


# --- --op show --mode target ----------------------------------------------------------

_TARGET_RE = re.compile(r"^Target (\d+): (\S+)$")
_INITIATOR_RE = re.compile(r"^Initiator: (\S+)(?: alias: (.*))?$")
_SIZE_RE = re.compile(r"^(\d+) MB, Block size: (\d+)$")
_SECTIONS = {
    "System information:",
    "I_T nexus information:",
    "LUN information:",
    "Account information:",
    "ACL information:",
}


@dataclass(slots=True)
class _TargetBuilder:
    tid: int
    iqn: str
    driver: str = ""
    state: str = ""
    nexuses: list[TgtNexus] = field(default_factory=list)
    luns: list[TgtLun] = field(default_factory=list)
    accounts: list[TgtAccount] = field(default_factory=list)
    acls: list[str] = field(default_factory=list)

    def build(self) -> TgtTarget:
        return TgtTarget(
            self.tid,
            self.iqn,
            self.driver,
            self.state,
            tuple(self.nexuses),
            tuple(self.luns),
            tuple(self.accounts),
            tuple(self.acls),
        )


def parse_show_target(text: str) -> list[TgtTarget]:
    """Parse ``tgtadm --lld iscsi --op show --mode target`` (all targets)."""
    targets: list[TgtTarget] = []
    lines = list(_lines(text))
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _TARGET_RE.match(line.text)
        if line.level != 0 or not m:
            raise ParseError("expected 'Target <tid>: <iqn>'", line.raw, line.lineno)
        builder = _TargetBuilder(int(m.group(1)), m.group(2))
        i += 1
        while i < len(lines) and lines[i].level >= 1:
            header = lines[i]
            if header.level != 1 or header.text not in _SECTIONS:
                raise ParseError("unknown section", header.raw, header.lineno)
            j = i + 1
            while j < len(lines) and lines[j].level >= 2:
                j += 1
            _SECTION_PARSERS[header.text](builder, lines[i + 1 : j])
            i = j
        targets.append(builder.build())
    return targets


def _system(builder: _TargetBuilder, body: list[_Line]) -> None:
    for line in body:
        key, value = _key_value(line)
        if key == "Driver":
            builder.driver = value
        elif key == "State":
            builder.state = value


def _nexus(builder: _TargetBuilder, body: list[_Line]) -> None:
    nexus_id: int | None = None
    initiator = ""
    alias: str | None = None
    conns: list[TgtConnection] = []

    def flush() -> None:
        if nexus_id is not None:
            builder.nexuses.append(TgtNexus(nexus_id, initiator, alias, tuple(conns)))

    for line in body:
        if line.level == 2:
            key, value = _key_value(line)
            if key != "I_T nexus":
                raise ParseError("expected 'I_T nexus: <id>'", line.raw, line.lineno)
            flush()
            nexus_id, initiator, alias, conns = _int(value, line), "", None, []
        elif line.level == 3 and line.text.startswith("Initiator:"):
            m = _INITIATOR_RE.match(line.text)
            if not m:
                raise ParseError("bad Initiator line", line.raw, line.lineno)
            initiator = m.group(1)
            alias = None if m.group(2) in (None, "none") else m.group(2)
        elif line.level == 3 and line.text.startswith("Connection:"):
            conns.append(TgtConnection(_int(_key_value(line)[1], line), None))
        elif line.level == 4 and line.text.startswith("IP Address:") and conns:
            conns[-1] = TgtConnection(conns[-1].cid, _key_value(line)[1])
        elif line.level >= 4 and conns:
            continue  # transport details (e.g. iSER) this lab does not use
        else:
            raise ParseError("unexpected line in I_T nexus information", line.raw, line.lineno)
    flush()


def _luns(builder: _TargetBuilder, body: list[_Line]) -> None:
    fields: dict[str, tuple[str, _Line]] = {}
    order: list[str] = []
    head: _Line | None = None

    def flush() -> None:
        if head is None:
            return
        builder.luns.append(_build_lun(head, fields, order))

    for line in body:
        key, value = _key_value(line)
        if line.level == 2:
            if key != "LUN":
                raise ParseError("expected 'LUN: <n>'", line.raw, line.lineno)
            flush()
            head, fields, order = line, {}, []
        elif line.level == 3 and head is not None:
            fields[key] = (value, line)
            order.append(key)
        else:
            raise ParseError("unexpected line in LUN information", line.raw, line.lineno)
    flush()


_LUN_KNOWN = {
    "Type",
    "SCSI ID",
    "SCSI SN",
    "Size",
    "Online",
    "Removable media",
    "Readonly",
    "Backing store type",
    "Backing store path",
    "Backing store flags",
}


def _build_lun(head: _Line, fields: dict[str, tuple[str, _Line]], order: list[str]) -> TgtLun:
    def need(key: str) -> tuple[str, _Line]:
        if key not in fields:
            raise ParseError(f"LUN has no '{key}' field", head.raw, head.lineno)
        return fields[key]

    size_value, size_line = need("Size")
    m = _SIZE_RE.match(size_value)
    if not m:
        raise ParseError(
            "expected 'Size: <n> MB, Block size: <n>'", size_line.raw, size_line.lineno
        )
    path = need("Backing store path")[0]

    def flag(key: str, default: bool) -> bool:
        return _yes(*fields[key]) if key in fields else default

    return TgtLun(
        lun=_int(_key_value(head)[1], head),
        type=need("Type")[0],
        size_mb=int(m.group(1)),
        block_size=int(m.group(2)),
        backing_store_type=need("Backing store type")[0],
        backing_store_path=None if path == "None" else path,
        scsi_id=fields.get("SCSI ID", ("", head))[0],
        scsi_sn=fields.get("SCSI SN", ("", head))[0],
        online=flag("Online", True),
        readonly=flag("Readonly", False),
        removable=flag("Removable media", False),
        backing_store_flags=fields.get("Backing store flags", ("", head))[0],
        extra=tuple((k, fields[k][0]) for k in order if k not in _LUN_KNOWN),
    )


def _accounts(builder: _TargetBuilder, body: list[_Line]) -> None:
    for line in body:
        if line.level != 2:
            raise ParseError("unexpected line in Account information", line.raw, line.lineno)
        user, _, rest = line.text.partition(" ")
        if rest not in ("", "(outgoing)"):
            raise ParseError("expected '<user>' or '<user> (outgoing)'", line.raw, line.lineno)
        builder.accounts.append(TgtAccount(user, outgoing=bool(rest)))


def _acls(builder: _TargetBuilder, body: list[_Line]) -> None:
    for line in body:
        if line.level != 2 or " " in line.text:
            raise ParseError("unexpected line in ACL information", line.raw, line.lineno)
        builder.acls.append(line.text)


_SECTION_PARSERS = {
    "System information:": _system,
    "I_T nexus information:": _nexus,
    "LUN information:": _luns,
    "Account information:": _accounts,
    "ACL information:": _acls,
}


# --- other show modes --------------------------------------------------------------


def parse_show_account(text: str) -> list[str]:
    """Parse ``tgtadm --lld iscsi --op show --mode account``: the CHAP user names."""
    users: list[str] = []
    for line in _lines(text):
        if line.level == 0 and line.text == "Account list:":
            continue
        if line.level != 1 or " " in line.text:
            raise ParseError("unexpected line in account list", line.raw, line.lineno)
        users.append(line.text)
    return users


def parse_show_conn(text: str) -> list[TgtSession]:
    """Parse ``tgtadm --lld iscsi --op show --mode conn --tid N``."""
    sessions: list[TgtSession] = []
    sid: int | None = None
    conns: list[tuple[int, str, str | None]] = []
    for line in _lines(text):
        key, value = _key_value(line)
        if line.level == 0 and key == "Session":
            if sid is not None:
                sessions.append(TgtSession(sid, tuple(conns)))
            sid, conns = _int(value, line), []
        elif line.level == 1 and key == "Connection" and sid is not None:
            conns.append((_int(value, line), "", None))
        elif line.level == 2 and key == "Initiator" and conns:
            conns[-1] = (conns[-1][0], value, conns[-1][2])
        elif line.level == 2 and key == "IP Address" and conns:
            conns[-1] = (conns[-1][0], conns[-1][1], value)
        else:
            raise ParseError("unexpected line in connection list", line.raw, line.lineno)
    if sid is not None:
        sessions.append(TgtSession(sid, tuple(conns)))
    return sessions


def parse_target_params(text: str) -> dict[str, str]:
    """Parse ``--op show --mode target --tid N``: the target's ``key=value`` parameters."""
    params: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        key, sep, value = raw.partition("=")
        if not sep or not key or " " in key:
            raise ParseError("expected 'key=value'", raw, lineno)
        params[key] = value
    return params


# --- tgtadm exit status and stderr -------------------------------------------------


class TgtadmError(enum.Enum):
    """Why a ``tgtadm`` call failed; values are tgtadm_strerror() texts (usr/tgtadm.c)."""

    OK = "success"
    UNKNOWN = "unknown error"
    NO_MEMORY = "out of memory"
    NO_DRIVER = "can't find the driver"
    NO_TARGET = "can't find the target"
    NO_LUN = "can't find the logical unit"
    NO_SESSION = "can't find the session"
    NO_CONNECTION = "can't find the connection"
    NO_BINDING = "can't find the binding"
    TARGET_EXISTS = "this target already exists"
    BINDING_EXISTS = "this binding already exists"
    LUN_EXISTS = "this logical unit number already exists"
    ACL_EXISTS = "this access control rule already exists"
    ACL_MISSING = "this access control rule does not exist"
    ACCOUNT_EXISTS = "this account already exists"
    NO_ACCOUNT = "can't find the account"
    TOO_MANY_ACCOUNTS = "too many accounts"
    INVALID_REQUEST = "invalid request"
    OUTGOING_ACCOUNT_EXISTS = "this target already has an outgoing account"
    TARGET_ACTIVE = "this target is still active"
    LUN_ACTIVE = "this logical unit is still active"
    DRIVER_ACTIVE = "this driver is busy"
    UNSUPPORTED = "this operation isn't supported"
    UNKNOWN_PARAM = "unknown parameter"
    PREVENT_REMOVAL = "this device has Prevent Removal set"
    NO_DAEMON = "failed to send request hdr to tgt daemon"
    """Nothing listens on the control socket (wrong ``-C``, or tgtd not running)."""


# An idempotent driver treats these as "already in the wanted state".
_ALREADY_DONE = {
    TgtadmError.TARGET_EXISTS,
    TgtadmError.LUN_EXISTS,
    TgtadmError.ACL_EXISTS,
    TgtadmError.ACCOUNT_EXISTS,
    TgtadmError.BINDING_EXISTS,
}
_ABSENT = {
    TgtadmError.NO_TARGET,
    TgtadmError.NO_LUN,
    TgtadmError.NO_ACCOUNT,
    TgtadmError.NO_BINDING,
    TgtadmError.ACL_MISSING,
}
_TGTADM_ENOTCONN = 107


@dataclass(frozen=True, slots=True)
class TgtadmOutcome:
    exit_code: int
    error: TgtadmError
    message: str
    """The stderr line that explained it ('' on success)."""

    @property
    def ok(self) -> bool:
        return self.error is TgtadmError.OK

    @property
    def already_exists(self) -> bool:
        return self.error in _ALREADY_DONE

    @property
    def absent(self) -> bool:
        return self.error in _ABSENT


def classify_tgtadm(exit_code: int, stderr: str) -> TgtadmOutcome:
    """Map a ``tgtadm`` exit status and stderr to a :class:`TgtadmError`."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    message = next((ln for ln in lines if ln.startswith("tgtadm:")), lines[-1] if lines else "")
    if exit_code == 0:
        return TgtadmOutcome(0, TgtadmError.OK, "")
    reason = message.removeprefix("tgtadm:").strip()
    # Longest text first: "can't find the target" must not win over a longer match.
    for error in sorted(TgtadmError, key=lambda e: -len(e.value)):
        if error is not TgtadmError.OK and reason.startswith(error.value):
            return TgtadmOutcome(exit_code, error, message)
    if exit_code == _TGTADM_ENOTCONN:
        return TgtadmOutcome(exit_code, TgtadmError.NO_DAEMON, message)
    return TgtadmOutcome(exit_code, TgtadmError.UNKNOWN, message)
