"""Parsers for Xen's ``xl``: ``list``, ``list -l``, ``info`` and ``-v migrate`` output.

Two kinds of transcripts test it. ``tests/data/xl/real-4.17`` holds what Xen 4.17's xl
really printed in the dom0s of the Xen lab (``miglab sandbox up --hypervisor xen``: Xen
under QEMU TCG): ``list``, ``list -l``, ``info``, ``-v migrate`` of a PVH guest (success,
and a PV guest's failure), ``create`` errors; its README says how each was captured.
The older releases (4.4's migration v1, xm) cannot run here: their transcripts in
``tests/data/xl`` are composed from the print formats in Xen's sources (and a few
public logs), their README naming the source function of every line. The facts this
module is built on:

* ``xl list`` (xl_info.c ``list_domains``): ``"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"``.
  Names are never truncated and may be longer than 40 columns. During a migration the
  receiving copy is ``NAME--incoming`` and the sender's copy ``NAME--migratedaway``.
* ``xl list -l`` prints JSON (``[{"domid": N, "config": libxl_domain_config}]``); libxl
  leaves out fields that hold their default, so everything but the name is optional.
* ``xl info`` (xl_info.c ``print_info``): ``"%-23s: %s"`` lines, memory in MiB.
* ``xl migrate`` writes everything to stderr, and the receiver's stderr reaches it
  through ssh. The sender *hides libxc progress* while it streams (xl_migrate.c sets
  ``XTL_STDIOSTREAM_HIDE_PROGRESS`` around ``libxl_domain_suspend``), and migration v2's
  restore side reports none, so a Xen 4.6+ migration shows phases but no per-iteration
  page counts. Migration v1 (Xen <= 4.5) printed per-iteration statistics as
  ``xc: detail:`` lines with ``xl -v`` (xc_domain_save.c ``print_stats``), and the
  receiver's ``Reloading memory pages`` progress. :class:`XlMigrateParser` reads both,
  and libxc's progress lines whenever they do appear (e.g. ``xl save`` on a tty).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from backend.drivers import ParseError

__all__ = [
    "PAGE_SIZE",
    "MigratePhase",
    "MigrateUpdate",
    "SaveHeader",
    "ShutdownReason",
    "XlDisk",
    "XlDomain",
    "XlDomainConfig",
    "XlInfo",
    "XlMigrateParser",
    "XlNic",
    "XlState",
    "domain_faults",
    "is_unknown_domain_error",
    "parse_xl_info",
    "parse_xl_list",
    "parse_xl_list_long",
    "parse_xl_migrate",
]

PAGE_SIZE = 4096
"""libxc counts x86 guest pages; the page size in every format here is 4 KiB."""

INCOMING_SUFFIX = "--incoming"
MIGRATEDAWAY_SUFFIX = "--migratedaway"


# --- xl list -----------------------------------------------------------------------


class ShutdownReason(enum.Enum):
    """State letter 5 of ``xl list`` (``shutdown_reason_letters = "-rscwS"``)."""

    POWEROFF = "-"
    REBOOT = "r"
    SUSPEND = "s"
    CRASH = "c"
    WATCHDOG = "w"
    SOFT_RESET = "S"
    UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class XlState:
    """The 6-letter state column, e.g. ``r-----`` or ``-b----`` or ``--p---``."""

    running: bool
    blocked: bool
    paused: bool
    shutdown: bool
    shutdown_reason: ShutdownReason | None
    """Only when ``shutdown`` is set (the letter is ``-`` otherwise too)."""
    dying: bool

    @classmethod
    def parse(cls, flags: str) -> XlState:
        if not _STATE_RE.match(flags):
            raise ValueError(f"not an xl state: {flags!r}")
        shutdown = flags[3] == "s"
        return cls(
            running=flags[0] == "r",
            blocked=flags[1] == "b",
            paused=flags[2] == "p",
            shutdown=shutdown,
            shutdown_reason=ShutdownReason(flags[4]) if shutdown else None,
            dying=flags[5] == "d",
        )

    def __str__(self) -> str:
        reason = self.shutdown_reason.value if self.shutdown_reason else "-"
        return "".join(
            (
                "r" if self.running else "-",
                "b" if self.blocked else "-",
                "p" if self.paused else "-",
                "s" if self.shutdown else "-",
                reason,
                "d" if self.dying else "-",
            )
        )


@dataclass(frozen=True, slots=True)
class XlDomain:
    name: str
    domid: int
    mem_mib: int
    vcpus: int
    state: XlState
    cpu_time_s: float

    @property
    def base_name(self) -> str:
        """The guest's name without a migration suffix."""
        for suffix in (INCOMING_SUFFIX, MIGRATEDAWAY_SUFFIX):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name

    @property
    def migration_role(self) -> Literal["incoming", "migratedaway"] | None:
        """``incoming`` on the target during a migration, ``migratedaway`` on the source."""
        if self.name.endswith(INCOMING_SUFFIX):
            return "incoming"
        if self.name.endswith(MIGRATEDAWAY_SUFFIX):
            return "migratedaway"
        return None


_STATE_RE = re.compile(r"^[r-][b-][p-][s-][-rscwS?][d-]$")
_LIST_ROW_RE = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<id>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
    r"(?P<state>[r-][b-][p-][s-][-rscwS?][d-])\s+(?P<time>\d+\.\d)$"
)
_LIST_HEADER_RE = re.compile(r"^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)")


def parse_xl_list(text: str) -> list[XlDomain]:
    """Parse ``xl list [NAME]``. The header (TAB-separated in the original) is optional."""
    domains: list[XlDomain] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or _LIST_HEADER_RE.match(line):
            continue
        m = _LIST_ROW_RE.match(line)
        if not m:
            raise ParseError("not an 'xl list' row", raw, lineno)
        domains.append(
            XlDomain(
                name=m.group("name"),
                domid=int(m.group("id")),
                mem_mib=int(m.group("mem")),
                vcpus=int(m.group("vcpus")),
                state=XlState.parse(m.group("state")),
                cpu_time_s=float(m.group("time")),
            )
        )
    return domains


_UNKNOWN_DOMAIN_RE = re.compile(
    r"is an invalid domain identifier|Error: Domain '.*' does not exist|"
    r"Domain \S+ does not exist|Non-existant domain"
)


def is_unknown_domain_error(stderr: str) -> bool:
    """True when xl's stderr says the named domain does not exist (xl_utils.c)."""
    return bool(_UNKNOWN_DOMAIN_RE.search(stderr))


# --- xl list -l (JSON) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XlDisk:
    target: str | None
    """``pdev_path``: the host device or file, e.g. a /dev/disk/by-path name."""
    vdev: str | None
    backend: str | None = None
    format: str | None = None
    readwrite: bool = True
    is_cdrom: bool = False


@dataclass(frozen=True, slots=True)
class XlNic:
    mac: str | None
    bridge: str | None
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class XlDomainConfig:
    """One element of ``xl list -l``: the domain's libxl configuration."""

    domid: int
    """The top-level ``domid``; ``c_info.domid`` (4.14+) is the requested one, not this."""
    name: str
    uuid: str | None = None
    type: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    """``b_info.target_memkb`` in MiB (xl.cfg ``memory``)."""
    max_memory_mib: int | None = None
    disks: tuple[XlDisk, ...] = ()
    nics: tuple[XlNic, ...] = ()
    on_reboot: str | None = None


def parse_xl_list_long(text: str) -> list[XlDomainConfig]:
    """Parse ``xl list -l`` in its default JSON format."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("("):
        first = stripped.splitlines()[0]
        raise ParseError('SXP output (xl.conf output_format="sxp"); need JSON', first, 1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        lines = text.splitlines()
        bad = lines[e.lineno - 1] if 0 < e.lineno <= len(lines) else None
        raise ParseError(f"bad JSON ({e.msg})", bad, e.lineno) from None
    if not isinstance(data, list):
        raise ParseError("expected a JSON array of domains", stripped.splitlines()[0], 1)
    return [_domain_config(i, item) for i, item in enumerate(data)]


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParseError(f"{where} is not a JSON object", json.dumps(value)[:120])
    return value


def _opt_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(f"{where} is not an integer", json.dumps(value)[:120])
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _domain_config(index: int, item: Any) -> XlDomainConfig:
    where = f"domain #{index}"
    entry = _obj(item, where)
    domid = _opt_int(entry.get("domid"), f"{where} domid")
    config = _obj(entry.get("config"), f"{where} config")
    c_info = _obj(config.get("c_info"), f"{where} c_info")
    b_info = _obj(config.get("b_info"), f"{where} b_info")
    name = c_info.get("name")
    if domid is None or not isinstance(name, str) or not name:
        raise ParseError(f"{where} has no domid or c_info.name", json.dumps(item)[:120])

    def memkb(key: str) -> int | None:
        kb = _opt_int(b_info.get(key), f"{where} b_info.{key}")
        return None if kb is None or kb < 0 else kb // 1024

    disks = []
    for d in config.get("disks") or []:
        disk = _obj(d, f"{where} disk")
        disks.append(
            XlDisk(
                target=_opt_str(disk.get("pdev_path")),
                vdev=_opt_str(disk.get("vdev")),
                backend=_opt_str(disk.get("backend")),
                format=_opt_str(disk.get("format")),
                # libxl omits readwrite when 0 in newer versions: absent means read-only.
                readwrite=bool(disk.get("readwrite", 0)),
                is_cdrom=bool(disk.get("is_cdrom", 0)),
            )
        )
    nics = []
    for n in config.get("nics") or []:
        nic = _obj(n, f"{where} nic")
        nics.append(
            XlNic(_opt_str(nic.get("mac")), _opt_str(nic.get("bridge")), _opt_str(nic.get("ip")))
        )
    return XlDomainConfig(
        domid=domid,
        name=name,
        uuid=_opt_str(c_info.get("uuid")),
        type=_opt_str(c_info.get("type")),
        vcpus=_opt_int(b_info.get("max_vcpus"), f"{where} b_info.max_vcpus"),
        memory_mib=memkb("target_memkb"),
        max_memory_mib=memkb("max_memkb"),
        disks=tuple(disks),
        nics=tuple(nics),
        on_reboot=_opt_str(config.get("on_reboot")),
    )


# --- xl info -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XlInfo:
    host: str
    release: str
    xen_version: str
    nr_cpus: int
    total_memory_mib: int
    free_memory_mib: int
    machine: str = ""
    xen_major: int | None = None
    xen_minor: int | None = None
    xen_scheduler: str = ""
    xen_caps: tuple[str, ...] = ()
    virt_caps: tuple[str, ...] = ()
    xen_commandline: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    """Every line as (key, value), in order."""

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)


_INFO_RE = re.compile(r"^(?P<key>[a-z_0-9]+)\s*:(?: (?P<value>.*))?$")


def parse_xl_info(text: str) -> XlInfo:
    """Parse ``xl info``: ``key : value`` lines, the key padded to 23 columns."""
    fields: list[tuple[str, str]] = []
    where: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _INFO_RE.match(raw.rstrip())
        if not m:
            raise ParseError("expected 'key : value'", raw, lineno)
        key, value = m.group("key"), (m.group("value") or "").strip()
        fields.append((key, value))
        where[key] = (raw, lineno)
    values = dict(fields)

    def need(key: str) -> str:
        if key not in values:
            raise ParseError(f"xl info has no '{key}' line")
        return values[key]

    def integer(key: str, required: bool = True) -> int | None:
        if key not in values and not required:
            return None
        value = need(key)
        try:
            return int(value)
        except ValueError:
            raise ParseError(f"'{key}' is not a number", *where[key]) from None

    def number(key: str) -> int:
        n = integer(key)
        assert n is not None
        return n

    return XlInfo(
        host=need("host"),
        release=need("release"),
        xen_version=need("xen_version"),
        nr_cpus=number("nr_cpus"),
        total_memory_mib=number("total_memory"),
        free_memory_mib=number("free_memory"),
        machine=values.get("machine", ""),
        xen_major=integer("xen_major", required=False),
        xen_minor=integer("xen_minor", required=False),
        xen_scheduler=values.get("xen_scheduler", ""),
        xen_caps=tuple(values.get("xen_caps", "").split()),
        virt_caps=tuple(values.get("virt_caps", "").split()),
        xen_commandline=values.get("xen_commandline", ""),
        fields=tuple(fields),
    )


# --- xl migrate --------------------------------------------------------------------


class MigratePhase(enum.Enum):
    STARTED = "started"
    """The stream is set up (banner exchanged, header written), no memory sent yet."""
    PRECOPY = "precopy"
    """Memory is being copied while the guest runs."""
    STOP_AND_COPY = "stop-and-copy"
    """The guest is suspended: last dirty pages, device state, then the GO handshake."""
    DONE = "done"
    FAILED = "failed"


_RANK = {p: i for i, p in enumerate(MigratePhase)}

Side = Literal["sender", "receiver"]


@dataclass(frozen=True, slots=True)
class SaveHeader:
    """``(info 0xMANDATORY/0xOPTIONAL/OPTDATA_LEN)`` of the xl stream header."""

    mandatory_flags: int
    optional_flags: int
    optional_data_len: int

    @property
    def stream_version(self) -> int:
        """2 when ``XL_MANDATORY_FLAG_STREAMv2`` (bit 1) is set (Xen 4.6+), else 1."""
        return 2 if self.mandatory_flags & 0x2 else 1

    @property
    def json_config(self) -> bool:
        """``XL_MANDATORY_FLAG_JSON`` (bit 0): the guest config travels as JSON."""
        return bool(self.mandatory_flags & 0x1)


@dataclass(frozen=True, slots=True)
class MigrateUpdate:
    """What one line of ``xl migrate`` output says about the migration."""

    phase: MigratePhase
    """The migration's phase once this line is taken into account."""
    event: str
    """Short name of what the line reported, e.g. ``frames``, ``iteration-stats``."""
    line: str
    side: Side | None = None
    """Which xl printed it: the sender, or the receiver (through ssh)."""
    iteration: int | None = None
    """0-based copy round as libxc numbers it (``Frames iteration N`` / ``iter N``)."""
    pages: int | None = None
    """libxc's 'done' count: pages written this round (v2), p2m position (v1 save), or
    pages received (v1 restore); for ``total-sent``, all pages sent."""
    pages_total: int | None = None
    percent: int | None = None
    dirty_pages: int | None = None
    """Pages dirtied during the round just finished (v1 ``print_stats``)."""
    sent_mbit_s: int | None = None
    dirtied_mbit_s: int | None = None
    elapsed_ms: int | None = None
    error: str | None = None
    causes: tuple[str, ...] = ()
    """On a failure: the error lines seen before it, oldest first."""
    resumed_at_source: bool | None = None
    """On a failure: True when xl kept or resumed the guest at the source; None when the
    state is undefined (failure during the final handshake) or unknown."""
    final: bool = False

    @property
    def bytes(self) -> int | None:
        return None if self.pages is None else self.pages * PAGE_SIZE


# Optional "-T" prefixes of xtl messages: "YYYY-MM-DD HH:MM:SS TZ " and "[pid] ".
_TIMESTAMP_RE = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ )?(?:\[\d+\] )?")
_XTL_RE = re.compile(
    r"^(?P<ctx>xc|libxl|libxl-save-helper|xl): "
    r"(?P<level>debug|verbose|detail|progress|info|notice|warning|error|critical): "
    r"(?P<msg>.*)$"
)
# xtl progress: "%s: %lu/%lu  %3d%%" (message form) or "xc: %s: %lu/%lu  %3d%%" (tty).
_PROGRESS_RE = re.compile(r"^(?P<what>.+): (?P<done>\d+)/(?P<total>\d+) +(?P<pct>\d+)%$")
_CR_PROGRESS_RE = re.compile(r"^xc: (?P<body>.+: \d+/\d+ +\d+%)$")
_HEADER_RE = re.compile(
    r"^Saving to (?P<dest>.+) new xl format "
    r"\(info 0x(?P<m>[0-9a-f]+)/0x(?P<o>[0-9a-f]+)/(?P<n>\d+)\)$"
)
_LOADING_RE = re.compile(
    r"^Loading new save file (?P<src>.+) \(new xl fmt info 0x[0-9a-f]+/0x[0-9a-f]+/\d+\)$"
)
_FRAMES_ITER_RE = re.compile(r"^Frames iteration (\d+)$")
_V1_ITER_RE = re.compile(r"^Saving memory: iter (\d+) \(last sent (\d+) skipped (\d+)\)$")
_V1_STATS_RE = re.compile(
    r"^delta (?P<ms>-?\d+)ms, dom0 (?P<d0>-?\d+)%, target (?P<dt>-?\d+)%, "
    r"sent (?P<sent>-?\d+)Mb/s, dirtied (?P<dirt>-?\d+)Mb/s (?P<pages>-?\d+) pages$"
)
_V1_TOTAL_RE = re.compile(r"^Total pages sent= (?P<n>\d+) \((?P<x>[\d.]+)x\)$")
_SAVING_DOMAIN_RE = re.compile(r"^Saving domain (?P<domid>\d+), type (?P<type>.+)$")
# xg_sr_restore.c xc_domain_restore, -v: the receiver's new domain (the sender's own
# "fd %d, dom %u, flags %u, hvm %d" has flags).
_RESTORE_DOMAIN_RE = re.compile(r"^fd \d+, dom (?P<domid>\d+), hvm \d+, stream_type \d+$")
_SUSPEND_RC_RE = re.compile(r"^migration sender: libxl_domain_suspend failed \(rc=(-?\d+)\)$")
_HANDSHAKE_TAIL = (
    "Domain state is now undefined !",
    "Please CHECK AT BOTH ENDS",
    "resuming at most one instance.",
    "would probably result in SEVERE DATA LOSS",
    "responsibility to avoid that.",
)

# xl_migrate.c messages that move the migration along: text -> (event, side, phase).
_STEPS: dict[str, tuple[str, Side, MigratePhase]] = {
    "migration target: Ready to receive domain.": (
        "receiver-ready",
        "receiver",
        MigratePhase.STARTED,
    ),
    "migration target: Transfer complete, requesting permission to start domain.": (
        "transfer-complete",
        "receiver",
        MigratePhase.STOP_AND_COPY,
    ),
    "migration sender: Target has acknowledged transfer.": (
        "acknowledged",
        "sender",
        MigratePhase.STOP_AND_COPY,
    ),
    "migration sender: Giving target permission to start.": (
        "go",
        "sender",
        MigratePhase.STOP_AND_COPY,
    ),
    "migration target: Got permission, starting domain.": (
        "target-starting",
        "receiver",
        MigratePhase.STOP_AND_COPY,
    ),
    # "successsfully": the triple s is in xl_migrate.c itself.
    "migration target: Domain started successsfully.": (
        "target-started",
        "receiver",
        MigratePhase.STOP_AND_COPY,
    ),
    "migration target: Domain started successfully.": (
        "target-started",
        "receiver",
        MigratePhase.STOP_AND_COPY,
    ),
    "migration sender: Target reports successful startup.": (
        "target-reports-success",
        "sender",
        MigratePhase.STOP_AND_COPY,
    ),
}
# Terminal failures printed by the sender: text -> (event, resumed_at_source).
_FAILURES: dict[str, tuple[str, bool | None]] = {
    "Migration failed, resuming at sender.": ("failed-resumed", True),
    "Migration failed, failed to suspend at sender.": ("failed-suspend", True),
    "Migration failed due to problems at target.": ("failed-at-target", None),
    "** Migration failed during final handshake **": ("failed-handshake", None),
    "No config file stored for running domain and none supplied - cannot migrate.": (
        "failed-no-config",
        True,
    ),
}
# Lines that explain a failure; they become MigrateUpdate.causes.
_CAUSE_PREFIXES = (
    "migration sender: libxl_domain_suspend failed",
    "migration sender: Target reports startup failure",
    "migration target: Domain creation failed",
    "migration target: Failure, destroying our copy.",
    "migration target: Failed to destroy our copy",
    "migration child [",
    "wait for migration child [",
    "(command run was:",
    "ssh: ",
)


_WHOLE_MESSAGES = (*_STEPS, *_FAILURES, "Migration successful.")


def _message_at_end(text: str) -> str:
    """One of xl's whole messages at the end of ``text``, else ``text``.

    The sender's xl and the receiver's (its stderr carried back by ssh) write to one
    stream, and a write of one can land inside a line of the other. Seen in a CI run
    here (Xen 4.17): ``libxl: migration target: Ready to receive domain.``, the rest of
    that ``libxl: debug: ...`` line coming on the next. The message is whole, so it is
    taken; a line that only contains one somewhere else is not.
    """
    if text in _WHOLE_MESSAGES:
        return text
    for message in _WHOLE_MESSAGES:
        if text.endswith(message) and text[: -len(message)].endswith(" "):
            return message
    return text


class XlMigrateParser:
    """Incremental reader of ``xl [-v] migrate DOMAIN HOST`` stderr (sender side).

    Feed it lines as they arrive; each recognised line yields one :class:`MigrateUpdate`.
    A line may contain several carriage-return separated progress updates (a tty-style
    logger), so :meth:`feed` returns a list. Lines of no known kind (ssh banners,
    ``Parsing config from <saved>``...) yield nothing and are kept in :attr:`ignored`.
    A line that starts like a known format but does not fit it (cut short by a paste,
    changed by another xl) yields nothing either: its reason is kept in :attr:`malformed`,
    so a reader can say what it skipped; :meth:`feed` never raises.
    Call :meth:`finish` with xl's exit status: some failures (ssh cannot reach the
    target) end without a closing message.
    """

    def __init__(self) -> None:
        self.phase = MigratePhase.STARTED
        self.header: SaveHeader | None = None
        self.domid: int | None = None
        self.receiver_domid: int | None = None
        """The guest's domid on the target (with ``-v``: libxc's restore line)."""
        self.guest_type: str | None = None
        self.suspended = False
        self.causes: list[str] = []
        self.ignored: list[str] = []
        self.malformed: list[ParseError] = []
        self.history: list[MigrateUpdate] = []
        self._result: MigrateUpdate | None = None
        self._lineno = 0
        self._v1_rounds = 0  # print_stats lines seen: the round they describe
        self._iteration: int | None = None
        self._resumed_ok = False
        self._in_handshake_block = False

    # -- public API --------------------------------------------------------------

    @property
    def result(self) -> MigrateUpdate | None:
        """The final update (DONE or FAILED) once there is one."""
        return self._result

    @property
    def lines_not_understood(self) -> int:
        """Lines of no known kind and known lines that did not fit: what an import skipped."""
        return len(self.ignored) + len(self.malformed)

    @property
    def stream_version(self) -> int | None:
        return self.header.stream_version if self.header else None

    def feed(self, line: str) -> list[MigrateUpdate]:
        self._lineno += 1
        updates: list[MigrateUpdate] = []
        for chunk in line.rstrip("\n").split("\r"):
            text = _TIMESTAMP_RE.sub("", chunk.rstrip(), count=1)
            if not text.strip():
                continue
            try:
                update = self._one(text)
            except ParseError as exc:
                self.malformed.append(exc)
                continue
            if update is not None:
                updates.append(update)
                self._record(update)
        return updates

    def _record(self, update: MigrateUpdate) -> None:
        self.history.append(update)
        if update.final and self._result is None:
            self._result = update

    def finish(self, exit_status: int | None) -> list[MigrateUpdate]:
        """Close the run; returns a final update if xl's output did not print one."""
        if self.result is not None:
            return []
        if exit_status == 0:
            update = self._update("exit", "xl exited 0", phase=MigratePhase.DONE, final=True)
        else:
            why = f"xl exited with status {exit_status}"
            # Before the guest was suspended xl leaves it running at the source.
            resumed = True if _RANK[self.phase] < _RANK[MigratePhase.STOP_AND_COPY] else None
            update = self._update(
                "exit",
                why,
                phase=MigratePhase.FAILED,
                # The first cause is the root one (e.g. ssh could not connect); later
                # lines are consequences (truncated banner, transport exit status).
                error=self.causes[0] if self.causes else why,
                causes=tuple(self.causes),
                resumed_at_source=resumed,
                final=True,
            )
        self._record(update)
        return [update]

    # -- internals ---------------------------------------------------------------

    def _update(
        self,
        event: str,
        line: str,
        *,
        phase: MigratePhase | None = None,
        **values: Any,
    ) -> MigrateUpdate:
        if phase is not None and (
            phase in (MigratePhase.DONE, MigratePhase.FAILED) or _RANK[phase] > _RANK[self.phase]
        ):
            self.phase = phase
        return MigrateUpdate(phase=self.phase, event=event, line=line, **values)

    def _fail(self, text: str, reason: str) -> ParseError:
        return ParseError(reason, text, self._lineno)

    def _one(self, text: str) -> MigrateUpdate | None:
        stripped = _message_at_end(text.strip())
        if stripped in _STEPS:
            event, side, phase = _STEPS[stripped]
            return self._update(event, stripped, phase=phase, side=side)
        if stripped == "Migration successful.":
            return self._update(
                "success", stripped, phase=MigratePhase.DONE, side="sender", final=True
            )
        if stripped in _FAILURES:
            event, resumed = _FAILURES[stripped]
            if event == "failed-at-target":
                resumed = True if self._resumed_ok else None
            self._in_handshake_block = event == "failed-handshake"
            return self._update(
                event,
                stripped,
                phase=MigratePhase.FAILED,
                side="sender",
                error=stripped,
                causes=tuple(self.causes),
                resumed_at_source=resumed,
                final=True,
            )
        if self._in_handshake_block and stripped.startswith(_HANDSHAKE_TAIL):
            return None
        if stripped.startswith("Saving to "):
            return self._header(stripped)
        if stripped.startswith("Loading new save file "):
            if not _LOADING_RE.match(stripped):
                raise self._fail(stripped, "malformed 'Loading new save file' line")
            return self._update("receiver-loading", stripped, side="receiver")
        if stripped == "migration sender: Resumed OK.":
            self._resumed_ok = True
            return self._update("resumed", stripped, side="sender")
        if stripped.startswith(_CAUSE_PREFIXES) or " contained unexpected data instead of " in (
            stripped
        ):
            return self._cause(stripped)
        if m := _XTL_RE.match(stripped):
            return self._xtl(stripped, m.group("ctx"), m.group("level"), m.group("msg"))
        if m := _CR_PROGRESS_RE.match(stripped):
            return self._progress(stripped, m.group("body"))
        self.ignored.append(stripped)
        return None

    def _header(self, text: str) -> MigrateUpdate:
        m = _HEADER_RE.match(text)
        if not m:
            raise self._fail(text, "malformed 'Saving to ... new xl format' line")
        self.header = SaveHeader(int(m.group("m"), 16), int(m.group("o"), 16), int(m.group("n")))
        return self._update("stream-header", text, phase=MigratePhase.STARTED, side="sender")

    def _cause(self, text: str) -> MigrateUpdate:
        self.causes.append(text)
        side: Side = "receiver" if text.startswith("migration target") else "sender"
        return self._update("error", text, side=side, error=text)

    def _xtl(self, text: str, ctx: str, level: str, msg: str) -> MigrateUpdate | None:
        if level in ("error", "critical"):
            return self._cause(text)
        # xtl prints progress at level "progress", or "detail" for steps under 5%.
        if ctx == "xc" and (level == "progress" or (level == "detail" and _PROGRESS_RE.match(msg))):
            return self._progress(text, msg)
        if ctx == "xc":
            return self._xc_message(text, msg)
        if ctx == "libxl" and level == "debug":
            # libxl_dom_suspend.c: the moment the guest is asked to, and has, suspended.
            if "suspend request via" in msg or "Calling xc_domain_shutdown on HVM" in msg:
                return self._update("suspend-requested", text, phase=MigratePhase.STOP_AND_COPY)
            if msg.endswith("guest has suspended"):
                self.suspended = True
                return self._update("domain-suspended", text, phase=MigratePhase.STOP_AND_COPY)
        if "exited with error status" in msg or "died due to fatal signal" in msg:
            return self._cause(text)  # libxl_exec.c: the ssh transport process died
        self.ignored.append(text)
        return None

    def _xc_message(self, text: str, msg: str) -> MigrateUpdate | None:
        if m := _RESTORE_DOMAIN_RE.match(msg):
            self.receiver_domid = int(m.group("domid"))
        if m := _SAVING_DOMAIN_RE.match(msg):
            self.domid, self.guest_type = int(m.group("domid")), m.group("type")
            return self._update("saving-domain", text, phase=MigratePhase.PRECOPY, side="sender")
        if msg.startswith("delta "):
            m = _V1_STATS_RE.match(msg)
            if not m:
                raise self._fail(text, "malformed libxc 'delta ...' statistics line")
            round_no = self._v1_rounds
            self._v1_rounds += 1
            return self._update(
                "iteration-stats",
                text,
                phase=MigratePhase.PRECOPY,
                side="sender",
                iteration=round_no,
                elapsed_ms=int(m.group("ms")),
                sent_mbit_s=int(m.group("sent")),
                dirtied_mbit_s=int(m.group("dirt")),
                dirty_pages=int(m.group("pages")),
            )
        if msg == "Start last iteration":
            return self._update("last-iteration", text, phase=MigratePhase.STOP_AND_COPY)
        if msg.startswith("SUSPEND shinfo "):
            self.suspended = True
            return self._update(
                "domain-suspended", text, phase=MigratePhase.STOP_AND_COPY, side="sender"
            )
        if msg.startswith("Total pages sent="):
            m = _V1_TOTAL_RE.match(msg)
            if not m:
                raise self._fail(text, "malformed libxc 'Total pages sent=' line")
            return self._update("total-sent", text, side="sender", pages=int(m.group("n")))
        if msg == "All memory is saved":
            return self._update("memory-saved", text, side="sender")
        if msg.startswith("Save exit rc=") and msg != "Save exit rc=0":
            return self._cause(text)
        if msg == "Restore successful":
            return self._update(
                "restore-complete", text, phase=MigratePhase.STOP_AND_COPY, side="receiver"
            )
        self.ignored.append(text)
        return None

    def _progress(self, text: str, body: str) -> MigrateUpdate:
        m = _PROGRESS_RE.match(body)
        if not m:
            raise self._fail(text, "malformed libxc progress line")
        what = m.group("what")
        nums: dict[str, Any] = {
            "pages": int(m.group("done")),
            "pages_total": int(m.group("total")),
            "percent": int(m.group("pct")),
        }
        if what == "Domain now suspended":
            self.suspended = True
            return self._update(
                "domain-suspended", text, phase=MigratePhase.STOP_AND_COPY, side="sender"
            )
        if what in ("Start of stream", "End of stream", "Complete"):
            event = {"Start of stream": "stream-start", "End of stream": "stream-end"}.get(
                what, "stream-complete"
            )
            return self._update(event, text, side="sender")
        if what == "Reloading memory pages":
            return self._update(
                "restore-progress", text, phase=MigratePhase.PRECOPY, side="receiver", **nums
            )
        it: int | None = None
        if im := _FRAMES_ITER_RE.match(what):
            it = int(im.group(1))
        elif im := _V1_ITER_RE.match(what):
            it = int(im.group(1))
        elif what not in ("Frames", "Checkpointed save", "Frames verify"):
            return self._update("progress", text, **nums)
        phase = MigratePhase.STOP_AND_COPY if self.suspended else MigratePhase.PRECOPY
        return self._update("frames", text, phase=phase, side="sender", iteration=it, **nums)


def parse_xl_migrate(text: str, exit_status: int | None = None) -> list[MigrateUpdate]:
    """Run a whole ``xl migrate`` transcript through :class:`XlMigrateParser`."""
    parser = XlMigrateParser()
    updates: list[MigrateUpdate] = []
    for line in _split_keep_cr(text):
        updates.extend(parser.feed(line))
    if exit_status is not None:
        updates.extend(parser.finish(exit_status))
    return updates


def _split_keep_cr(text: str) -> Iterable[str]:
    # str.splitlines() would also split on "\r"; the parser wants to see those itself.
    return text.split("\n")


# --- xl dmesg ----------------------------------------------------------------------

# Xen's console lines (``xl dmesg``), each ``(XEN) `` and, with console_timestamps, a
# ``[seconds]`` stamp. What Xen 4.17 says when a domain dies of a fault, not by asking:
# hvm.c hvm_triple_fault: gprintk ``d1v0 Triple fault - invoking HVM shutdown action 1``
# (action 1 = SHUTDOWN_reboot by default: xl's on_reboot, not on_crash, then applies);
# then traps.c vcpu_show_execution_state: ``*** Dumping Dom1 vcpu#0 state: ***`` and a
# register dump (``RIP:    e008:[<...>]``, ``... cs: e008``); domain.c __domain_crash:
# ``domain_crash called from ...`` then ``Domain 1 (vcpu#0) crashed on cpu#0:`` or
# ``Domain 1 reported crashed by domain 0 on cpu#0:``.
_XEN_PREFIX = re.compile(r"^\(XEN\)\s*(?:\[[^\]]*\]\s*)?")
_VCPU_WORDS = re.compile(r"fault|crash|shutdown", re.IGNORECASE)
# Dump lines kept after a domain's dump header: where it was and in which code segment.
_DUMP_KEEP = re.compile(r"^(?:RIP:|RFLAGS:|.*\bcs: [0-9a-f]{4}\s*$)")
_DUMP_LINES = 14  # a register dump's length (traps.c show_registers)
MAX_FAULT_LINES = 8


def domain_faults(dmesg: str, domid: int) -> list[str]:
    """What Xen's console (``xl dmesg``) says about domain ``domid`` faulting or
    crashing, each line without its ``(XEN)`` prefix, at most :data:`MAX_FAULT_LINES`.
    Lines of any other kind are skipped; never raises."""
    texts = [_XEN_PREFIX.sub("", line).rstrip() for line in dmesg.splitlines()]
    vcpu = re.compile(rf"^d{domid}v\d+\b")
    crashed = re.compile(rf"^Domain {domid} (?:\(vcpu#\d+\) crashed|reported crashed)\b")
    dump = re.compile(rf"^\*\*\* Dumping Dom{domid} vcpu#\d+ state")
    found: list[str] = []
    dump_left = 0
    for index, text in enumerate(texts):
        if dump_left:
            dump_left -= 1
            if _DUMP_KEEP.match(text):
                found.append(text)
            continue
        if vcpu.match(text) and _VCPU_WORDS.search(text):
            found.append(text)
        elif crashed.match(text):
            before = texts[index - 1] if index else ""
            if before.startswith("domain_crash called from"):
                found.append(before)
            found.append(text)
        elif dump.match(text):
            found.append(text)
            dump_left = _DUMP_LINES
    return found[:MAX_FAULT_LINES]
