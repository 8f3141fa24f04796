"""Parsers for the initiator side: open-iscsi ``iscsiadm`` and libiscsi's ``iscsi-ls``.

Sources (see ``tests/data/iscsiadm/README.md``): real runs of iscsiadm 2.1.8 here
(records, errors, exit codes: the kernel side does not work in this sandbox, so no
login), open-iscsi's sources for what only a real login prints (``usr/idbm.c``,
``libopeniscsiusr`` session printing, ``usr/session_info.c``, ``include/iscsi_err.h``),
and systemd's ``udev-builtin-path_id.c`` for ``/dev/disk/by-path`` names.

Things worth knowing:

* A record made with ``-o new`` has no TPGT; ``-m node`` prints it as the unsigned
  ``4294967295``. :class:`Portal` turns that back into ``-1``.
* ``iscsiadm`` exit codes are ``include/iscsi_err.h`` values; 15 means the session is
  already logged in and 21 means "nothing matched" (no records, no sessions). Both are
  expected answers for an idempotent driver, not failures: see :func:`classify`. But a
  discovery that could not connect may also exit 21 ("No portals found" after repeated
  "cannot make connection to ...: Connection refused"); :func:`classify` reads stderr and
  calls that unreachable (retryable).
* ``iscsi-ls`` prints its errors on *stdout* (``list_luns: iscsi_connect failed...``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from backend.drivers import ParseError

__all__ = [
    "AttachedDisk",
    "ByPath",
    "IscsiErr",
    "IscsiLsLun",
    "IscsiLsTarget",
    "IscsiSession",
    "IscsiSessionDetail",
    "IscsiadmOutcome",
    "LoginEvent",
    "NodeRecord",
    "OutcomeKind",
    "Portal",
    "by_path",
    "classify",
    "parse_by_path",
    "parse_discovery",
    "parse_iscsi_ls",
    "parse_login_output",
    "parse_node_list",
    "parse_session_list",
    "parse_session_tree",
]

_UINT32 = 1 << 32


@dataclass(frozen=True, slots=True)
class Portal:
    address: str
    """IPv4 address or host name; IPv6 without the brackets iscsiadm prints."""
    port: int
    tpgt: int
    """Target portal group tag; -1 for a record made by hand (printed as 4294967295)."""

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port},{self.tpgt}"


# "%s:%d,%d" with the address bracketed when it is IPv6.
_PORTAL = r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\],]+)):(?P<port>\d+),(?P<tpgt>-?\d+)"
_IQN = r"(?P<iqn>(?:iqn|eui|naa)\.\S+)"


def _portal(m: re.Match[str]) -> Portal:
    tpgt = int(m.group("tpgt"))
    if tpgt >= _UINT32 // 2:  # printed unsigned: 4294967295 is -1
        tpgt -= _UINT32
    return Portal(m.group("v6") or m.group("host"), int(m.group("port")), tpgt)


# --- discovery and node records ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One ``ADDR:PORT,TPGT IQN`` line from discovery or ``iscsiadm -m node``."""

    portal: Portal
    iqn: str


_NODE_RE = re.compile(rf"^{_PORTAL}\s+{_IQN}$")


def parse_node_list(text: str) -> list[NodeRecord]:
    """Parse ``iscsiadm -m node`` (also the stdout of sendtargets discovery).

    Same ``ADDR:PORT,TPGT IQN`` line in open-iscsi 2.0-87x and 2.1.x; other lines are
    skipped (not records).
    """
    records: list[NodeRecord] = []
    for raw in text.splitlines():
        if m := _NODE_RE.match(raw.strip()):
            records.append(NodeRecord(_portal(m), m.group("iqn")))
    return records


def parse_discovery(text: str) -> list[NodeRecord]:
    """Parse ``iscsiadm -m discovery -t sendtargets -p PORTAL`` (usr/idbm.c, one per line)."""
    return parse_node_list(text)


# --- sessions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IscsiSession:
    """One line of ``iscsiadm -m session``."""

    transport: str
    sid: int
    portal: Portal
    iqn: str
    flash: bool = False


_SESSION_RE = re.compile(
    rf"^(?P<transport>[\w-]+):\s+\[(?P<sid>\d+)\]\s+{_PORTAL}\s+{_IQN}"
    r"(?:\s+\((?P<flash>non-flash|flash)\))?$"
)


def parse_session_list(text: str) -> list[IscsiSession]:
    """Parse ``iscsiadm -m session`` (``tcp: [1] 10.0.0.1:3260,1 iqn... (non-flash)``).

    2.0-87x prints no ``(non-flash)``; 2.1.x does. Other lines are skipped.
    """
    sessions: list[IscsiSession] = []
    for raw in text.splitlines():
        m = _SESSION_RE.match(raw.strip())
        if not m:
            continue
        sessions.append(
            IscsiSession(
                m.group("transport"),
                int(m.group("sid")),
                _portal(m),
                m.group("iqn"),
                flash=m.group("flash") == "flash",
            )
        )
    return sessions


@dataclass(frozen=True, slots=True)
class AttachedDisk:
    host: int
    channel: int
    target_id: int
    lun: int
    device: str | None
    """Block device name (``sdb``); ``None`` for a LUN without a disk (tgt's LUN 0)."""
    state: str | None = None


@dataclass(frozen=True, slots=True)
class IscsiSessionDetail:
    """One session from ``iscsiadm -m session -P 1|2|3``."""

    iqn: str
    current_portal: Portal
    persistent_portal: Portal
    sid: int | None = None
    iface_name: str | None = None
    initiator_name: str | None = None
    iface_ip: str | None = None
    connection_state: str | None = None
    session_state: str | None = None
    host_number: int | None = None
    host_state: str | None = None
    luns: tuple[AttachedDisk, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    """Every other ``Key: value`` line of the session, in order (timeouts, params...)."""

    @property
    def disks(self) -> tuple[AttachedDisk, ...]:
        return tuple(d for d in self.luns if d.device)

    def disk_for_lun(self, lun: int) -> str | None:
        return next((d.device for d in self.luns if d.lun == lun and d.device), None)


_TREE_TARGET_RE = re.compile(rf"^Target:\s+{_IQN}(?:\s+\((?P<flash>non-flash|flash)\))?$")
_TREE_PORTAL_RE = re.compile(rf"^(?P<which>Current|Persistent)\s+Portal:\s+{_PORTAL}$")
_HOST_RE = re.compile(r"^Host\s+Number:\s+(\d+)\s+State:\s+(.*)$")
_SCSI_RE = re.compile(r"^scsi(\d+)\s+Channel\s+(\d+)\s+Id\s+(\d+)\s+Lun:\s+(\d+)$")
_DISK_RE = re.compile(r"^Attached\s+scsi\s+disk\s+(\S+)\s+State:\s+(.*)$")
_STARS_RE = re.compile(r"^\*+$")
_TREE_KEYS = {
    "SID": "sid",
    "Iface Name": "iface_name",
    "Iface Initiatorname": "initiator_name",
    "Iface IPaddress": "iface_ip",
    "iSCSI Connection State": "connection_state",
    "iSCSI Session State": "session_state",
}


@dataclass(slots=True)
class _DetailBuilder:
    iqn: str
    current: Portal | None = None
    persistent: Portal | None = None
    values: dict[str, str] = field(default_factory=dict)
    fields: list[tuple[str, str]] = field(default_factory=list)
    host: tuple[int, str] | None = None
    luns: list[AttachedDisk] = field(default_factory=list)

    def build(self) -> IscsiSessionDetail:
        assert self.current is not None
        sid = self.values.get("sid")
        return IscsiSessionDetail(
            iqn=self.iqn,
            current_portal=self.current,
            persistent_portal=self.persistent or self.current,
            sid=int(sid) if sid is not None and sid.isdigit() else None,
            iface_name=self.values.get("iface_name"),
            initiator_name=self.values.get("initiator_name"),
            iface_ip=self.values.get("iface_ip"),
            connection_state=self.values.get("connection_state"),
            session_state=self.values.get("session_state"),
            host_number=self.host[0] if self.host else None,
            host_state=self.host[1] if self.host else None,
            luns=tuple(self.luns),
            fields=tuple(self.fields),
        )


def parse_session_tree(text: str) -> list[IscsiSessionDetail]:
    """Parse ``iscsiadm -m session -P 3`` (also ``-P 1`` / ``-P 2``), one item a session.

    Reads open-iscsi 2.0-87x and 2.1.x (usr/session_info.c's ``session_info_print_tree``):
    a ``Target:`` line, then per session a ``Current Portal:``/``Persistent Portal:`` pair
    (or, for a second session to the same portal, an empty line) and TAB-indented
    details. The structure is read from the line contents, not the indentation, so a
    copy from a terminal (TABs turned to spaces) parses the same. Lines it does not know
    are skipped: details before any ``Target:``/``Current Portal:`` line, and anything
    that is not ``Key: value``.
    """
    sessions: list[IscsiSessionDetail] = []
    iqn: str | None = None
    cur: _DetailBuilder | None = None
    same_portal_again = False

    def start_session() -> _DetailBuilder | None:
        if iqn is None:
            return None
        if cur is not None and cur.current is not None:
            sessions.append(cur.build())
        builder = _DetailBuilder(iqn)
        if cur is not None and cur.iqn == iqn:
            builder.current, builder.persistent = cur.current, cur.persistent
        return builder

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            # Same portal again: the tree prints an empty line instead of the portals.
            same_portal_again = cur is not None
            continue
        if line.startswith(("iSCSI Transport Class version ", "version ")):
            continue
        if m := _TREE_TARGET_RE.match(line):
            if cur is not None and cur.current is not None:
                sessions.append(cur.build())
            iqn, cur, same_portal_again = m.group("iqn"), None, False
            continue
        if m := _TREE_PORTAL_RE.match(line):
            if m.group("which") == "Current":
                cur = start_session()
                if cur is not None:
                    cur.current = _portal(m)
            elif cur is not None:
                cur.persistent = _portal(m)
            same_portal_again = False
            continue
        if same_portal_again:
            cur = start_session()
            same_portal_again = False
        if cur is None or cur.current is None:
            continue  # details of no session we know of: not guessed onto one
        if _STARS_RE.match(line) or line.endswith(":") or line == "Unavailable":
            # Section titles ("Interface:", "Timeouts:"...), empty values, and the word
            # session_info.c prints when sysfs has no SCSI host for the session.
            continue
        if m := _HOST_RE.match(line):
            cur.host = (int(m.group(1)), m.group(2).strip())
        elif m := _SCSI_RE.match(line):
            host, channel, target_id, lun = (int(g) for g in m.groups())
            cur.luns.append(AttachedDisk(host, channel, target_id, lun, None))
        elif m := _DISK_RE.match(line):
            if cur.luns:
                last = cur.luns[-1]
                cur.luns[-1] = AttachedDisk(
                    last.host, last.channel, last.target_id, last.lun, m.group(1), m.group(2)
                )
        elif ": " in line:
            key, _, value = line.partition(": ")
            if key in _TREE_KEYS:
                cur.values[_TREE_KEYS[key]] = value.strip()
            else:
                cur.fields.append((key.strip(), value.strip()))
    if cur is not None and cur.current is not None:
        sessions.append(cur.build())
    return sessions


# --- login / logout messages (stdout, usr/session_mgmt.c) ---------------------------


@dataclass(frozen=True, slots=True)
class LoginEvent:
    action: str
    """``logging-in``, ``logged-in``, ``logging-out``, ``logged-out``, ``failed``."""
    iqn: str
    portal: str
    iface: str | None = None
    sid: int | None = None


_LOGIN_RE = re.compile(
    r"^(?:iscsiadm: )?(?P<verb>Logging in to|Login to|Could not login to) "
    r"\[iface: (?P<iface>[^,]+), target: (?P<iqn>[^,]+), portal: (?P<portal>[^\]]+)\]"
    r"(?P<tail>.*)$"
)
_LOGOUT_RE = re.compile(
    r"^(?P<verb>Logging out of session|Logout of) "
    r"\[sid: (?P<sid>\d+), target: (?P<iqn>[^,]+), portal: (?P<portal>[^\]]+)\](?P<tail>.*)$"
)


def parse_login_output(text: str) -> list[LoginEvent]:
    """Pick the login/logout lines out of ``iscsiadm ... --login|--logout`` output.

    Both streams may be passed together; other lines are ignored (they are errors and
    exit codes speak for those, see :func:`classify`).
    """
    events: list[LoginEvent] = []
    for raw in text.splitlines():
        line = raw.strip()
        if m := _LOGIN_RE.match(line):
            verb, tail = m.group("verb"), m.group("tail").strip()
            if verb == "Logging in to":
                action = "logging-in"
            elif verb == "Login to" and tail.startswith("successful"):
                action = "logged-in"
            else:
                action = "failed"
            events.append(LoginEvent(action, m.group("iqn"), m.group("portal"), m.group("iface")))
        elif m := _LOGOUT_RE.match(line):
            action = "logging-out" if m.group("verb").startswith("Logging") else "logged-out"
            events.append(
                LoginEvent(action, m.group("iqn"), m.group("portal"), sid=int(m.group("sid")))
            )
    return events


# --- exit codes --------------------------------------------------------------------


class IscsiErr(enum.IntEnum):
    """``include/iscsi_err.h``; the texts are those of ``usr/iscsi_err.c``."""

    SUCCESS = 0
    ERR = 1
    SESS_NOT_FOUND = 2
    NOMEM = 3
    TRANS = 4
    LOGIN = 5
    IDBM = 6
    INVAL = 7
    TRANS_TIMEOUT = 8
    INTERNAL = 9
    LOGOUT = 10
    PDU_TIMEOUT = 11
    TRANS_NOT_FOUND = 12
    ACCESS = 13
    TRANS_CAPS = 14
    SESS_EXISTS = 15
    INVALID_MGMT_REQ = 16
    ISNS_UNAVAILABLE = 17
    ISCSID_COMM_ERR = 18
    FATAL_LOGIN = 19
    ISCSID_NOTCONN = 20
    NO_OBJS_FOUND = 21
    SYSFS_LOOKUP = 22
    HOST_NOT_FOUND = 23
    LOGIN_AUTH_FAILED = 24
    ISNS_QUERY = 25
    ISNS_REG_FAILED = 26
    OP_NOT_SUPP = 27
    BUSY = 28
    AGAIN = 29
    UNKNOWN_DISCOVERY_TYPE = 30
    CHILD_TERMINATED = 31
    SESSION_NOT_CONNECTED = 32
    ISCSID_REQ_TIMEOUT = 33

    @property
    def text(self) -> str:
        return _ERR_TEXT[self]


_ERR_TEXT = {
    IscsiErr.SUCCESS: "ok",
    IscsiErr.ERR: "unknown error",
    IscsiErr.SESS_NOT_FOUND: "session not found",
    IscsiErr.NOMEM: "no available memory",
    IscsiErr.TRANS: "encountered connection failure",
    IscsiErr.LOGIN: "encountered iSCSI login failure",
    IscsiErr.IDBM: "encountered iSCSI database failure",
    IscsiErr.INVAL: "invalid parameter",
    IscsiErr.TRANS_TIMEOUT: "connection timed out",
    IscsiErr.INTERNAL: "internal error",
    IscsiErr.LOGOUT: "encountered iSCSI logout failure",
    IscsiErr.PDU_TIMEOUT: "iSCSI PDU timed out",
    IscsiErr.TRANS_NOT_FOUND: "iSCSI driver not found",
    IscsiErr.ACCESS: "daemon access denied",
    IscsiErr.TRANS_CAPS: "iSCSI driver does not support requested capability",
    IscsiErr.SESS_EXISTS: "session exists",
    IscsiErr.INVALID_MGMT_REQ: "Unknown request",
    IscsiErr.ISNS_UNAVAILABLE: "iSNS service not supported",
    IscsiErr.ISCSID_COMM_ERR: "could not communicate to iscsid",
    IscsiErr.FATAL_LOGIN: "encountered non-retryable iSCSI login failure",
    IscsiErr.ISCSID_NOTCONN: "could not connect to iscsid",
    IscsiErr.NO_OBJS_FOUND: "no objects found",
    IscsiErr.SYSFS_LOOKUP: "sysfs lookup failure",
    IscsiErr.HOST_NOT_FOUND: "host not found",
    IscsiErr.LOGIN_AUTH_FAILED: "iSCSI login failed due to authorization failure",
    IscsiErr.ISNS_QUERY: "iSNS query failed",
    IscsiErr.ISNS_REG_FAILED: "iSNS registration failed",
    IscsiErr.OP_NOT_SUPP: "operation not supported",
    IscsiErr.BUSY: "device or resource in use",
    IscsiErr.AGAIN: "operation failed but retry may succeed",
    IscsiErr.UNKNOWN_DISCOVERY_TYPE: "unknown discovery type",
    IscsiErr.CHILD_TERMINATED: "child process terminated",
    IscsiErr.SESSION_NOT_CONNECTED: "target likely not connected",
    IscsiErr.ISCSID_REQ_TIMEOUT: "iscsid request timed out",
}


class OutcomeKind(enum.Enum):
    """What an ``iscsiadm`` result means to a driver that wants a state, not an action."""

    OK = "ok"
    ALREADY_LOGGED_IN = "already logged in"  # 15: the wanted state already holds
    NOTHING_FOUND = "nothing found"  # 21: no record / no session (fine for logout)
    LOGIN_FAILED = "login failed"  # 5, 19
    AUTH_FAILED = "authorization failed"  # 24: CHAP or ACL
    UNREACHABLE = "target unreachable"  # 4, 8, 11, 32: connection or timeouts
    NO_DAEMON = "iscsid unavailable"  # 18, 20, 33
    NO_DRIVER = "no iSCSI kernel driver"  # 12, 14
    BUSY = "in use"  # 28: e.g. logout of a disk still open
    RETRY = "retry may succeed"  # 29
    BAD_REQUEST = "bad request"  # 7, 16, 27, 30
    FAILED = "failed"  # anything else


_KIND = {
    IscsiErr.SUCCESS: OutcomeKind.OK,
    IscsiErr.SESS_EXISTS: OutcomeKind.ALREADY_LOGGED_IN,
    IscsiErr.NO_OBJS_FOUND: OutcomeKind.NOTHING_FOUND,
    IscsiErr.LOGIN: OutcomeKind.LOGIN_FAILED,
    IscsiErr.FATAL_LOGIN: OutcomeKind.LOGIN_FAILED,
    IscsiErr.LOGIN_AUTH_FAILED: OutcomeKind.AUTH_FAILED,
    IscsiErr.TRANS: OutcomeKind.UNREACHABLE,
    IscsiErr.TRANS_TIMEOUT: OutcomeKind.UNREACHABLE,
    IscsiErr.PDU_TIMEOUT: OutcomeKind.UNREACHABLE,
    IscsiErr.SESSION_NOT_CONNECTED: OutcomeKind.UNREACHABLE,
    IscsiErr.ISCSID_COMM_ERR: OutcomeKind.NO_DAEMON,
    IscsiErr.ISCSID_NOTCONN: OutcomeKind.NO_DAEMON,
    IscsiErr.ISCSID_REQ_TIMEOUT: OutcomeKind.NO_DAEMON,
    IscsiErr.TRANS_NOT_FOUND: OutcomeKind.NO_DRIVER,
    IscsiErr.TRANS_CAPS: OutcomeKind.NO_DRIVER,
    IscsiErr.BUSY: OutcomeKind.BUSY,
    IscsiErr.AGAIN: OutcomeKind.RETRY,
    IscsiErr.INVAL: OutcomeKind.BAD_REQUEST,
    IscsiErr.INVALID_MGMT_REQ: OutcomeKind.BAD_REQUEST,
    IscsiErr.OP_NOT_SUPP: OutcomeKind.BAD_REQUEST,
    IscsiErr.UNKNOWN_DISCOVERY_TYPE: OutcomeKind.BAD_REQUEST,
}
_RETRYABLE = {OutcomeKind.UNREACHABLE, OutcomeKind.RETRY, OutcomeKind.BUSY, OutcomeKind.NO_DAEMON}
_REPORTED_RE = re.compile(r"initiator reported error \((\d+) - ([^)]*)\)")
# 2.1.x words an existing session without the "(15 - ...)" text.
_ALREADY_PRESENT_RE = re.compile(r"session requested, but \d+ already present")
# What usr/io.c and usr/discovery.c log when the portal cannot be reached. Discovery
# that gives up after reopen_max retries did not always set an error (fixed in 2.0.878 by
# 4ee991b, "Fix possible discovery hang when timing out"; before 2.0.873, 508c5df, its
# errors were not iscsi_err.h codes at all): it then returns nothing found, "No portals
# found", exit 21. These lines say the portal was unreachable, not empty.
_UNREACHABLE_RE = re.compile(
    r"cannot make connection to |connect to \S+ (?:failed|timed out)|"
    r"Connection to Discovery Address \S+ failed|connection login retries \(reopen_max\)"
)
# systemd noise iscsiadm triggers when it tries to socket-activate iscsid in a container.
_NOISE = ("System has not been booted with systemd", "Failed to connect to bus")


@dataclass(frozen=True, slots=True)
class IscsiadmOutcome:
    exit_code: int
    err: IscsiErr | None
    """``None`` for an exit code outside iscsi_err.h."""
    kind: OutcomeKind
    message: str
    """The most telling stderr line ('' on success)."""
    reported: IscsiErr | None = None
    """The code inside 'initiator reported error (N - text)' when stderr has one."""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.OK

    @property
    def settled(self) -> bool:
        """True when a state-seeking caller can stop: done, or already so."""
        return self.kind in (OutcomeKind.OK, OutcomeKind.ALREADY_LOGGED_IN)

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


def _err(code: int) -> IscsiErr | None:
    try:
        return IscsiErr(code)
    except ValueError:
        return None


def classify(exit_code: int, stderr: str = "") -> IscsiadmOutcome:
    """Map an ``iscsiadm`` exit status (and its stderr) to an :class:`IscsiadmOutcome`."""
    lines = [
        ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)
    ]
    if exit_code == 0:
        return IscsiadmOutcome(0, IscsiErr.SUCCESS, OutcomeKind.OK, "")
    err = _err(exit_code)
    if err is None and any(_ALREADY_PRESENT_RE.search(ln) for ln in lines):
        err = IscsiErr.SESS_EXISTS
    reported: IscsiErr | None = None
    message = ""
    for line in lines:
        if m := _REPORTED_RE.search(line):
            reported, message = _err(int(m.group(1))), line
    if not message and err is not None:
        # A line that names the error ("... iSCSI driver not found. Please ...").
        message = next((ln for ln in lines if err.text.lower() in ln.lower()), "")
    if not message:
        # Otherwise the first iscsiadm line names the cause; the last is "Could not ...".
        picked = [ln for ln in lines if ln.startswith("iscsiadm:")] or lines
        message = picked[0] if picked else ""
    kind = _KIND.get(err, OutcomeKind.FAILED) if err is not None else OutcomeKind.FAILED
    if kind is OutcomeKind.NOTHING_FOUND and any(_UNREACHABLE_RE.search(ln) for ln in lines):
        # "No portals found" after failed connects: the portal was not reached at all.
        kind = OutcomeKind.UNREACHABLE
        message = next(ln for ln in lines if _UNREACHABLE_RE.search(ln))
    return IscsiadmOutcome(exit_code, err, kind, message, reported)


# --- /dev/disk/by-path -----------------------------------------------------------------

_BY_PATH_DIR = "/dev/disk/by-path/"
_BY_PATH_RE = re.compile(
    r"^ip-(?P<addr>.+):(?P<port>\d+)-iscsi-(?P<iqn>.+)-lun-(?P<lun>\d+)(?:-part(?P<part>\d+))?$"
)


def by_path(address: str, port: int, iqn: str, lun: int, partition: int | None = None) -> str:
    """The udev symlink of an iSCSI LUN: ``/dev/disk/by-path/ip-A:P-iscsi-IQN-lun-N``.

    systemd's path_id builds ``"ip-%s:%s-iscsi-%s-%s"`` from the session's *persistent*
    portal address, port and target name, and ``lun-%d``; partitions add ``-partN``.
    It names the target portal, not the initiator, so it is the same on every host that
    logs in to the same portal: what a Xen guest config needs to migrate.
    """
    if not iqn or any(c in iqn for c in " /,="):
        raise ValueError(f"not a usable target name: {iqn!r}")
    if lun < 0 or port <= 0:
        raise ValueError(f"bad port {port} or LUN {lun}")
    name = f"ip-{address}:{port}-iscsi-{iqn}-lun-{lun}"
    if partition is not None:
        name += f"-part{partition}"
    return _BY_PATH_DIR + name


@dataclass(frozen=True, slots=True)
class ByPath:
    address: str
    port: int
    iqn: str
    lun: int
    partition: int | None = None


def parse_by_path(path: str) -> ByPath:
    """Split a by-path name (with or without the directory) back into its parts."""
    name = path.removeprefix(_BY_PATH_DIR)
    m = _BY_PATH_RE.match(name)
    if not m:
        raise ParseError("not an iSCSI /dev/disk/by-path name", path)
    part = m.group("part")
    return ByPath(
        m.group("addr"),
        int(m.group("port")),
        m.group("iqn"),
        int(m.group("lun")),
        int(part) if part else None,
    )


# --- libiscsi iscsi-ls -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IscsiLsLun:
    lun: int
    type: str
    size: str | None = None
    """As printed, e.g. ``63M``; libiscsi rounds down and drops one block (64 MiB -> 63M)."""


@dataclass(frozen=True, slots=True)
class IscsiLsTarget:
    iqn: str
    portal: Portal
    luns: tuple[IscsiLsLun, ...] = ()
    error: str | None = None
    """Why LUNs could not be listed (login refused, CHAP...), as iscsi-ls printed it."""


_LS_TARGET_RE = re.compile(rf"^Target:{_IQN} Portal:{_PORTAL}$")
_LS_LUN_RE = re.compile(r"^Lun:(\d+)\s+Type:(\S+)(?: \(Size:(\S+)\))?$")
_LS_ERROR_RE = re.compile(r"^\w+: .*(?:failed|Failed|error|refused).*$")


def parse_iscsi_ls(text: str) -> list[IscsiLsTarget]:
    """Parse ``iscsi-ls [-s] iscsi://HOST[:PORT]/`` (libiscsi-bin 1.19); other lines skipped."""
    targets: list[IscsiLsTarget] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _LS_TARGET_RE.match(line):
            targets.append(IscsiLsTarget(m.group("iqn"), _portal(m)))
        elif (m := _LS_LUN_RE.match(line)) and targets:
            t = targets[-1]
            lun = IscsiLsLun(int(m.group(1)), m.group(2), m.group(3))
            targets[-1] = IscsiLsTarget(t.iqn, t.portal, (*t.luns, lun), t.error)
        elif _LS_ERROR_RE.match(line) and targets:
            t = targets[-1]
            targets[-1] = IscsiLsTarget(t.iqn, t.portal, t.luns, line)
        # anything else (a LUN before any target, a new line format) is skipped
    return targets
