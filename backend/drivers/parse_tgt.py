"""Parsers for tgt's ``tgtadm`` (the Linux SCSI target framework, userspace tgtd).

Formats were captured from tgt 1.0.85 (Debian 12) into ``tests/data/tgt``; see its
README. What matters for the lab:

* ``--op show --mode target`` is an indented tree, 4 spaces a level; the parsers read
  it by its keys, not its indentation, and skip lines they do not know. A target with no
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
    type: str | None
    """As printed (``(null)`` in an old tgt doc sample); ``None`` without a ``Type:`` line."""
    size_mb: int | None
    """Decimal megabytes, rounded by tgt (64 MiB -> 67); ``None`` if not printed in MB."""
    block_size: int | None
    """``None`` before tgt 1.0.12, which did not print it."""
    backing_store_type: str | None
    """``None`` before tgt 1.0.0 (one ``Backing store:`` line, the path)."""
    backing_store_path: str | None
    """``None`` for the controller LUN (tgt prints ``None`` / ``No backing store``)."""
    scsi_id: str = ""
    scsi_sn: str = ""
    online: bool | None = True
    """``None`` when not printed (tgt 0.9.x samples) or neither Yes nor No."""
    readonly: bool | None = False
    """``None`` when not printed (tgt before 1.0.x had no Readonly line)."""
    removable: bool | None = False
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
    unparsed: int = 0
    """Lines of this target the parser did not understand (skipped)."""

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


# --- --op show --mode target ----------------------------------------------------------

# "Target N: IQN"; a copy from a web page can glue the next line to it (tgt's own
# doc/README.mmc has "Target 1: iqn...    System information:").
_TARGET_RE = re.compile(r"^Target\s+(\d+):\s+(\S+)(?:\s+(?P<rest>\S.*))?$")
_INITIATOR_RE = re.compile(r"^Initiator:\s+(\S+)(?:\s+alias:\s+(.*))?$")
# 1.0.12+ "N MB, Block size: B"; 1.0.0-1.0.11 "N MB"; a unitless "N" in old docs.
_SIZE_RE = re.compile(r"^(?P<mb>\d+)\s+MB(?:,\s*Block size:\s*(?P<bs>\d+))?$")
_SECTIONS = {
    "System information:": "system",
    "I_T nexus information:": "nexus",
    "LUN information:": "luns",
    "Account information:": "accounts",
    "ACL information:": "acls",
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
    unparsed: int = 0
    # the open I_T nexus and LUN
    nexus: tuple[int, str, str | None] | None = None
    conns: list[TgtConnection] = field(default_factory=list)
    lun: int | None = None
    lun_fields: dict[str, str] = field(default_factory=dict)
    lun_order: list[str] = field(default_factory=list)

    def close_nexus(self) -> None:
        if self.nexus is not None:
            nid, initiator, alias = self.nexus
            self.nexuses.append(TgtNexus(nid, initiator, alias, tuple(self.conns)))
        self.nexus, self.conns = None, []

    def close_lun(self) -> None:
        if self.lun is not None:
            self.luns.append(_build_lun(self.lun, self.lun_fields, self.lun_order))
        self.lun, self.lun_fields, self.lun_order = None, {}, []

    def build(self) -> TgtTarget:
        self.close_nexus()
        self.close_lun()
        return TgtTarget(
            self.tid,
            self.iqn,
            self.driver,
            self.state,
            tuple(self.nexuses),
            tuple(self.luns),
            tuple(self.accounts),
            tuple(self.acls),
            self.unparsed,
        )


def parse_show_target(text: str) -> list[TgtTarget]:
    """Parse ``tgtadm --lld iscsi --op show --mode target`` (all targets).

    Reads tgt 0.9.x (``Backing store: PATH``), 1.0.0-1.0.11 (``Size: N MB``, no block
    size) and 1.0.12 and later (``Size: N MB, Block size: B``, ``Backing store flags``).
    The tree is read from the line contents (section titles, keys), not from the 4-space
    indentation, so text whose spaces were mangled by a copy parses the same. A line it
    does not know is skipped and counted in :attr:`TgtTarget.unparsed` (lines before the
    first ``Target`` line are skipped uncounted: there is no target to count them on).
    """
    targets: list[TgtTarget] = []
    cur: _TargetBuilder | None = None
    section = ""
    for line in _loose_lines(text):
        if m := _TARGET_RE.match(line):
            if cur is not None:
                targets.append(cur.build())
            cur, section = _TargetBuilder(int(m.group(1)), m.group(2)), ""
            rest = m.group("rest")
            if rest is None:
                continue
            line = rest
        if cur is None:
            continue
        if line in _SECTIONS:
            cur.close_nexus()
            cur.close_lun()
            section = _SECTIONS[line]
            continue
        if not _TARGET_LINE_PARSERS.get(section, _unknown)(cur, line):
            cur.unparsed += 1
    if cur is not None:
        targets.append(cur.build())
    return targets


def _loose_lines(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        # tgt prints "Backing store flags: " with a trailing space; keep values clean.
        line = raw.strip()
        if line:
            yield line


def _split(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    if not sep or not key.strip():
        return None
    return key.strip(), value.strip()


def _unknown(builder: _TargetBuilder, line: str) -> bool:
    return False


def _system(builder: _TargetBuilder, line: str) -> bool:
    kv = _split(line)
    if kv is None:
        return False
    key, value = kv
    if key == "Driver":
        builder.driver = value
    elif key in ("State", "Status"):  # "Status" in tgt's older doc samples
        builder.state = value
    else:
        return False
    return True


def _nexus(builder: _TargetBuilder, line: str) -> bool:
    kv = _split(line)
    if kv is None:
        return False
    key, value = kv
    if key == "I_T nexus" and value.isdigit():
        builder.close_nexus()
        builder.nexus = (int(value), "", None)
    elif key == "Initiator" and builder.nexus is not None:
        m = _INITIATOR_RE.match(line)
        if not m:
            return False
        alias = None if m.group(2) in (None, "none") else m.group(2)
        builder.nexus = (builder.nexus[0], m.group(1), alias)
    elif key == "Connection" and builder.nexus is not None and value.isdigit():
        builder.conns.append(TgtConnection(int(value), None))
    elif key == "IP Address" and builder.conns:
        builder.conns[-1] = TgtConnection(builder.conns[-1].cid, value)
    elif builder.conns:
        return True  # transport details (e.g. iSER) this lab does not use
    else:
        return False
    return True


def _luns(builder: _TargetBuilder, line: str) -> bool:
    kv = _split(line)
    if kv is None:
        return False
    key, value = kv
    if key == "LUN":
        builder.close_lun()
        if not value.isdigit():
            return False
        builder.lun = int(value)
    elif builder.lun is not None:
        builder.lun_fields[key] = value
        builder.lun_order.append(key)
    else:
        return False
    return True


_LUN_KNOWN = {
    "Type",
    "SCSI ID",
    "SCSI SN",
    "Size",
    "Online",
    "Removable media",
    "Readonly",
    "Backing store",
    "Backing store type",
    "Backing store path",
    "Backing store flags",
}


def _flag(value: str | None) -> bool | None:
    return {"Yes": True, "No": False}.get(value or "")


def _build_lun(number: int, fields: dict[str, str], order: list[str]) -> TgtLun:
    size = _SIZE_RE.match(fields.get("Size", ""))
    path = fields.get("Backing store path")
    if path is None and "Backing store" in fields:  # 0.9.x: one field, the path
        path = fields["Backing store"]
    return TgtLun(
        lun=number,
        type=fields.get("Type"),
        size_mb=int(size.group("mb")) if size else None,
        block_size=int(size.group("bs")) if size and size.group("bs") else None,
        backing_store_type=fields.get("Backing store type"),
        backing_store_path=None if path in (None, "None", "No backing store") else path,
        scsi_id=fields.get("SCSI ID", ""),
        scsi_sn=fields.get("SCSI SN", ""),
        online=_flag(fields.get("Online")),
        readonly=_flag(fields.get("Readonly")),
        removable=_flag(fields.get("Removable media")),
        backing_store_flags=fields.get("Backing store flags", ""),
        extra=tuple((k, fields[k]) for k in order if k not in _LUN_KNOWN),
    )


def _accounts(builder: _TargetBuilder, line: str) -> bool:
    user, _, rest = line.partition(" ")
    if rest.strip() not in ("", "(outgoing)"):
        return False
    builder.accounts.append(TgtAccount(user, outgoing=bool(rest.strip())))
    return True


def _acls(builder: _TargetBuilder, line: str) -> bool:
    if " " in line:
        return False
    builder.acls.append(line)
    return True


_TARGET_LINE_PARSERS = {
    "system": _system,
    "nexus": _nexus,
    "luns": _luns,
    "accounts": _accounts,
    "acls": _acls,
}


# --- other show modes --------------------------------------------------------------


def parse_show_account(text: str) -> list[str]:
    """Parse ``tgtadm --lld iscsi --op show --mode account``: the CHAP user names.

    Same format in tgt 0.9.x to 1.0.x; indentation is not relied on; a line with a space
    in it is not a user name and is skipped.
    """
    return [line for line in _loose_lines(text) if line != "Account list:" and " " not in line]


def parse_show_conn(text: str) -> list[TgtSession]:
    """Parse ``tgtadm --lld iscsi --op show --mode conn --tid N`` (unknown lines skipped)."""
    sessions: list[TgtSession] = []
    sid: int | None = None
    conns: list[tuple[int, str, str | None]] = []
    for line in _loose_lines(text):
        kv = _split(line)
        if kv is None:
            continue
        key, value = kv
        if key == "Session" and value.isdigit():
            if sid is not None:
                sessions.append(TgtSession(sid, tuple(conns)))
            sid, conns = int(value), []
        elif key == "Connection" and sid is not None and value.isdigit():
            conns.append((int(value), "", None))
        elif key == "Initiator" and conns:
            conns[-1] = (conns[-1][0], value, conns[-1][2])
        elif key == "IP Address" and conns:
            conns[-1] = (conns[-1][0], conns[-1][1], value)
    if sid is not None:
        sessions.append(TgtSession(sid, tuple(conns)))
    return sessions


def parse_target_params(text: str) -> dict[str, str]:
    """Parse ``--op show --mode target --tid N``: the target's ``key=value`` parameters.

    Lines that are not ``key=value`` are skipped (so the whole-target tree gives ``{}``).
    """
    params: dict[str, str] = {}
    for line in _loose_lines(text):
        key, sep, value = line.partition("=")
        if sep and key and " " not in key:
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
