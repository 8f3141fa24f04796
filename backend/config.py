"""lab.toml: the models of a lab, and the loader that turns a file into one.

A lab is one storage node that exports a disk over iSCSI, two hypervisor hosts
that log in to it, and one guest that runs from the disk and migrates between
them. The file has five tables: ``[lab]``, ``[hosts.NAME]`` (one per machine the
console talks to), ``[storage]``, ``[hypervisor]`` and ``[guest]``.

Reading order of this module: the models (every field documented: the
docstrings become the JSON Schema that editors use), the checks across tables,
then the loader. Reading the file, finding the line of a key and wording the
``file:line: key: message`` paragraphs is :mod:`backend.tomlfile`'s work.

Rules worth knowing:

* Unknown keys are errors everywhere: a typo must not be silently ignored.
* Types are strict: ``vcpus = "2"`` or ``port = true`` is an error, not a guess.
* Secrets are never written inline: a :class:`Secret` names an environment
  variable or a file, and :meth:`Secret.reveal` reads it when it is needed.
* Relative local paths (identity, known_hosts, secret files) are relative to
  the directory of lab.toml; ``~`` is expanded. Paths on remote hosts (the
  storage device, the guest's xl config) are kept exactly as written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from backend.inputs import LAB_MAX_BYTES
from backend.tomlfile import (
    ConfigError,
    ConfigErrors,
    KeyLines,
    Loc,
    describe_error,
    did_you_mean,
    dotted_key,
    load_toml_file,
    toml_syntax_error,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Chap",
    "Guest",
    "Host",
    "Hypervisor",
    "Lab",
    "LabConfig",
    "Portal",
    "Secret",
    "Storage",
    "lab_digest",
    "lab_json_schema",
    "load_lab",
    "parse_lab",
]

LOCAL = "local"
"""The address that means "the console's own machine": commands run as local subprocesses."""

ISCSI_PORT = 3260

# Ranges of the numbers in lab.toml. An unbounded value is a typo or a unit mistake
# and breaks something far from the file (inf overflows, 2**63 MiB never migrates);
# the ranges are wide enough for any real lab. They are in the JSON Schema too.
MAX_PORT = 65535
MAX_LINK_MBIT = 1_000_000
"""1 Tbit/s: lab.link_mbit and hypervisor.migrate_bandwidth_mbit."""
MAX_TIMEOUT_S = 3600.0
"""An hour: the longest SSH connect timeout or keepalive interval."""
MIN_KEEPALIVE_S = 0.1
"""A keepalive more often than this floods the link; 0 turns keepalives off."""
MAX_LUN = 16383
"""SAM flat-space LUNs (0..16383); LUN 0 is the target's controller."""
MAX_TGT_CONTROL_PORT = 32767
MAX_DOWNTIME_MS = 2_000_000
"""QEMU's own limit on the downtime it may be asked for (2000 s)."""
MAX_CONVERGENCE_SYNCS = 1000
MAX_VCPUS = 4096
"""KVM's and Xen's largest guests."""
MIN_MEMORY_MB = 16
MAX_MEMORY_MB = 16 * 1024 * 1024
"""16 TiB."""
MAX_CHAP_USER_BYTES = 255
"""RFC 3720 5.1: a text value is at most 255 bytes unless said otherwise."""


# --------------------------------------------------------------------------- field checks

# Host names are keys in [hosts.NAME]; no dots so that a dotted error path is unambiguous.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")
# RFC 3720 5.1 text-value characters (letters, digits, . - + @ _ / [ ] :), first an
# alphanumeric: no ',' '=' or blank, which ietadm --params, ietd.conf, tgtadm and
# targetcli would split on, and no leading '-' that a tool could read as an option.
_CHAP_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+@_/\[\]:]*")
_DOMAIN = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
# RFC 3720 3.2.6.3: iqn.YYYY-MM.reversed.domain[:anything], eui.16hex, naa.16hex|32hex.
_IQN = re.compile(r"iqn\.(\d{4})-(\d{2})\." + _DOMAIN + r"(?::[a-z0-9.:-]+)?")
_EUI = re.compile(r"eui\.[0-9A-Fa-f]{16}")
_NAA = re.compile(r"naa\.(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})")
_IQN_SCHEMA_PATTERN = (
    r"^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[a-z0-9.:-]+)?"
    r"|eui\.[0-9A-Fa-f]{16}|naa\.([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32}))$"
)


def _error(kind: str, message: str) -> PydanticCustomError:
    # Custom errors keep our message verbatim (ValueError would get a "Value error, " prefix).
    return PydanticCustomError(kind, message)


def _address_problem(value: str) -> str | None:
    """Why ``value`` is not a host name, IPv4 or IPv6 address (None when it is one)."""
    if not value:
        return "must not be empty"
    if any(c.isspace() for c in value):
        return f"{value!r} contains white space"
    if value.startswith("[") and value.endswith("]"):
        return "write an IPv6 address without brackets"
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return (
                f"{value!r} is not a valid IPv6 address "
                "(a host name has no ':'; put a port in its own key)"
            )
        return None
    if re.fullmatch(r"[0-9.]+", value):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return f"{value!r} is not a valid IPv4 address"
        return None
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"{value!r} is not a host name or an IP address"
    return None


def _check_address(value: str) -> str:
    problem = _address_problem(value)
    if problem is not None:
        raise _error("address", problem)
    return value


def chap_user_problem(user: str) -> str | None:
    """Why ``user`` cannot be a CHAP user name (None when it can); never echoes it whole."""
    if not user:
        return "must not be empty"
    if len(user.encode("utf-8")) > MAX_CHAP_USER_BYTES:
        return f"a CHAP user name is at most {MAX_CHAP_USER_BYTES} bytes"
    if not _CHAP_USER.fullmatch(user):
        return (
            "a CHAP user name uses letters, digits and . - + @ _ / [ ] : only, starting "
            "with a letter or digit (the target tools split on ',', '=' and blanks)"
        )
    return None


def chap_secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot be passed to a target tool as a CHAP password (None when it
    can). The message never contains the secret."""
    if not secret:
        return "the CHAP secret is empty"
    if "\0" in secret:
        return "the CHAP secret must not contain a NUL byte"
    if any(c.isspace() or c == "," for c in secret):
        # tgtadm, targetcli (which joins its words), ietadm --params and ietd.conf
        # all split on these.
        return "the CHAP secret must not contain blanks, newlines or commas"
    if any(ord(c) < 32 or ord(c) == 127 for c in secret):
        return "the CHAP secret must not contain control characters"
    return None


def _check_program(value: str) -> str:
    """A program on a remote host: a name looked up in PATH or a path to one.

    Any file name is a valid program name; refused are only what no exec can run and a
    transport cannot carry (empty, NUL, control characters such as a newline), and a
    leading '-' that a wrapper (env, sudo) would read as an option. A shell reserved
    word (``if``) is a fine name: the transport quotes argv[0].
    """
    if not value:
        raise _error("program", "must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _error("program", "must not contain control characters (a newline, a NUL...)")
    if value.startswith("-"):
        raise _error("program", f"{value!r} is not a program name (it starts with '-')")
    if value.endswith("/"):
        raise _error("program", f"{value!r} is a directory, not a program")
    return value


def _check_user(value: str | None) -> str | None:
    # A leading '-' would be read as an ssh option; '@' and ':' would split the target.
    if value is not None and not _USER.fullmatch(value):
        raise _error("user", f"{value!r} is not a user name")
    return value


def _check_remote_path(value: str) -> str:
    if not value.startswith("/"):
        raise _error("path", f"{value!r} must be an absolute path (it is on a remote host)")
    if "\0" in value:
        raise _error("path", "must not contain a NUL byte")
    return value


def _local_path(value: object, info: ValidationInfo) -> object:
    """Expand ``~`` and resolve a relative path against lab.toml's directory."""
    if isinstance(value, str):
        if not value:
            raise _error("path", "must not be empty")
        path = Path(value)
    elif isinstance(value, Path):
        path = value
    else:
        return value  # not a path at all: strict validation says so
    path = path.expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


LocalPath = Annotated[Path, BeforeValidator(_local_path)]
"""A path on the console's machine, relative to lab.toml's directory."""


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    # strict: TOML has real types, so "2" for an integer is a mistake, not a value.
    # frozen: one loaded lab is shared by every task; nobody edits it behind the others.
    # allow_inf_nan: TOML has inf and nan; no number in a lab may be either.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )

    def __eq__(self, other: object) -> bool:
        # Equal values are equal models: what a model knows about itself (a host's
        # name, the file a lab came from) is bookkeeping, and pydantic would compare it.
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__


class Secret(_Model):
    """Where a secret comes from: ``{ env = "VAR" }`` or ``{ file = "path" }``, never the value.

    The value is read by :meth:`reveal` when it is needed, so it is never part
    of the loaded lab, its repr, a dump or a session log.
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["env"]}, {"required": ["file"]}]}
    )

    env: str | None = None
    """Name of an environment variable that holds the secret."""

    file: LocalPath | None = None
    """A file whose content is the secret (a trailing newline is dropped); relative to
    lab.toml's directory. Keep it readable by you only (chmod 600)."""

    _key: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise _error(
                "inline_secret",
                'secrets are never written inline; use { env = "VAR" } '
                '(an environment variable) or { file = "path" } (a file holding the secret)',
            )
        return data

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            # Not echoed: a value that is no variable name may be the secret itself.
            raise _error(
                "env_name",
                "is not a valid environment variable name (letters, digits and '_', not "
                "starting with a digit); give the name of the variable that holds the "
                "secret, never the secret",
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise _error(
                "secret_source",
                'give exactly one of env or file: { env = "VAR" } or { file = "path" }',
            )
        return self

    def reveal(self) -> str:
        """Read the secret now. Raises :class:`ConfigError` when it is not available."""
        key = self._key or "secret"
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    "", None, key, f"environment variable {self.env} is not set; export it first"
                )
            if not value:
                raise ConfigError("", None, key, f"environment variable {self.env} is empty")
            return value
        assert self.file is not None  # guaranteed by _exactly_one
        try:
            # Sync read on purpose: a secret is read once, when a connection is set up.
            value = self.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                str(self.file), None, key, f"cannot read the secret file: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(str(self.file), None, key, "the secret file is not UTF-8") from None
        value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            raise ConfigError(str(self.file), None, key, "the secret file is empty")
        return value

    def __str__(self) -> str:
        return f"<secret from ${self.env}>" if self.env else f"<secret from file {self.file}>"


class Lab(_Model):
    """The lab as a whole."""

    name: str = Field(min_length=1)
    """A short name for the lab; it appears in session logs and reports."""

    link_mbit: int = Field(ge=1, le=MAX_LINK_MBIT)
    """Speed of the lab network in Mbit/s (100 for the 2009 study), 1 to 1000000.
    Migration bandwidth and the expected transfer times are derived from it."""

    description: str | None = None
    """Free text about the lab (machines, switch, where it is); shown in reports."""


class Host(_Model):
    """A machine the console runs commands on, over SSH or locally.

    Its name is the NAME of its [hosts.NAME] table (the ``name`` property).
    """

    address: str
    """Host name, IPv4 or IPv6 address (no brackets), or "local": the console runs
    on this machine and its commands run as local subprocesses."""

    user: str | None = None
    """SSH user. Default: the one ~/.ssh/config names, else the current user.
    Ignored for address = "local"."""

    port: int | None = Field(default=None, ge=1, le=MAX_PORT)
    """SSH port, 1 to 65535. Default: the one ~/.ssh/config names, else 22."""

    identity: LocalPath | None = None
    """Private key file for SSH. Default: the ssh agent and the usual ~/.ssh keys."""

    identity_passphrase: Secret | None = None
    """Passphrase of the identity key, as { env = "VAR" } or { file = "path" }."""

    via: str | None = None
    """Name of another host in [hosts] to jump through (like ssh -J)."""

    host_key: Literal["strict", "accept-new"] = "strict"
    """How to treat the host's SSH key: "strict" (default) only connects to keys
    already in known_hosts; "accept-new" records an unknown key on first use but
    still refuses a changed one."""

    known_hosts: LocalPath | None = None
    """known_hosts file to check host keys against. Default: ~/.ssh/known_hosts."""

    connect_timeout_s: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_S)
    """Seconds to wait for the SSH connection to be set up (above 0, at most 3600)."""

    keepalive_s: float = Field(default=5.0, ge=0, le=MAX_TIMEOUT_S)
    """Seconds between SSH keepalives, so that a dead link is noticed during a
    migration: 0.1 to 3600, or 0 to turn them off."""

    transport: Literal["ssh", "plain-exec"] = "ssh"
    """How commands travel: "ssh" (pooled shells, the default for real hosts) or
    "plain-exec" (each command one exec request, for servers that are not a shell,
    such as the simulated lab's hosts)."""

    _name: str = PrivateAttr(default="")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return value if value == LOCAL else _check_address(value)

    @field_validator("keepalive_s")
    @classmethod
    def _keepalive(cls, value: float) -> float:
        if 0 < value < MIN_KEEPALIVE_S:
            raise _error(
                "keepalive",
                f"must be 0 (no keepalives) or at least {MIN_KEEPALIVE_S:g}, got {value!r}",
            )
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return _check_user(value)

    @property
    def name(self) -> str:
        """The host's name: the NAME of its [hosts.NAME] table."""
        return self._name

    @property
    def is_local(self) -> bool:
        """True when the console itself runs on this host (address = "local")."""
        return self.address == LOCAL


class Portal(_Model):
    """Where the iSCSI target listens; written in lab.toml as "ADDR[:PORT]"."""

    address: str
    """Host name or IP address (IPv6 written as "[addr]:port" in lab.toml)."""

    port: int = Field(default=ISCSI_PORT, ge=1, le=MAX_PORT)
    """TCP port of the target (3260 by default)."""

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _parse_portal(value: object) -> object:
    if isinstance(value, Portal):
        return value
    if not isinstance(value, str):
        raise _error("portal", 'expected a string like "192.168.0.1:3260"')
    text = value.strip()
    port_text: str | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _error("portal", f'{value!r}: missing "]" after the IPv6 address')
        address, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _error("portal", f'{value!r}: expected ":PORT" after "]"')
            port_text = rest[1:]
        if ":" not in address:
            raise _error("portal", f"{value!r}: brackets are only for IPv6 addresses")
    elif text.count(":") > 1:
        # "fd00::1:3260" is itself a valid address: without brackets the port is a guess.
        raise _error("portal", f'{value!r}: write an IPv6 portal as "[addr]:port" or "[addr]"')
    else:
        address, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
    problem = _address_problem(address)
    if problem is not None:
        raise _error("portal", f"{value!r}: {problem}")
    port = ISCSI_PORT
    if port_text is not None:
        if not port_text.isdigit():
            raise _error("portal", f"{value!r}: the port must be a number")
        if len(port_text) > 5:
            raise _error("portal", f"{value[:60]!r}: the port is out of range 1-65535")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise _error("portal", f"{value!r}: port {port} is out of range 1-65535")
    return Portal(address=address, port=port)


PortalField = Annotated[
    Portal,
    BeforeValidator(_parse_portal),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": 'Where the target listens: "ADDR[:PORT]", port 3260 by default; '
            'IPv6 as "[addr]:port".',
            "examples": ["192.168.0.1:3260", "[fd00::1]:3260"],
        }
    ),
]


class Chap(_Model):
    """CHAP credentials the initiators log in with."""

    user: str = Field(min_length=1, max_length=MAX_CHAP_USER_BYTES)
    """CHAP user name: letters, digits and . - + @ _ / [ ] : (RFC 3720 text), starting
    with a letter or digit, at most 255 bytes."""

    secret: Secret
    """CHAP password, as { env = "VAR" } or { file = "path" }; never inline. It may not
    contain blanks, commas or control characters (the target tools split on them)."""

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        problem = chap_user_problem(value)
        if problem is not None:
            raise _error("chap_user", problem)
        return value


class Storage(_Model):
    """The iSCSI target that exports the guest's disk."""

    host: str
    """Name of the host in [hosts] that runs the target."""

    driver: Literal["tgt", "lio", "iet"]
    """Target software: "tgt" (tgtd/tgtadm), "lio" (targetcli) or "iet" (ietd/ietadm)."""

    iqn: str = Field(json_schema_extra={"pattern": _IQN_SCHEMA_PATTERN})
    """iSCSI name of the target: "iqn.YYYY-MM.reversed.domain[:name]" (RFC 3720),
    "eui." + 16 hex digits, or "naa." + 16 or 32 hex digits."""

    device: str
    """Absolute path of the backing partition or image file on the storage host."""

    portal: PortalField
    """Where the target listens: "ADDR[:PORT]", port 3260 by default; IPv6 as "[addr]:port"."""

    lun: int = Field(default=1, ge=1, le=MAX_LUN)
    """Logical unit number of the disk within the target, 1 to 16383 (0 is the
    target's controller)."""

    chap: Chap | None = None
    """CHAP credentials, e.g. { user = "miglab", secret = { env = "MIGLAB_CHAP" } }.
    Default: no authentication."""

    tgt_control_port: int | None = Field(default=None, ge=0, le=MAX_TGT_CONTROL_PORT)
    """For driver = "tgt" only: the tgtd instance to talk to (tgtd -C N, tgtadm -C N),
    when several tgtd run on one host. Default: tgtd's own default (0)."""

    @field_validator("iqn")
    @classmethod
    def _iqn(cls, value: str) -> str:
        if value != value.lower() and _IQN.fullmatch(value.lower()):
            raise _error("iqn", f"iSCSI names are lower case; write {value.lower()!r}")
        if len(value.encode()) > 223:
            raise _error("iqn", "an iSCSI name is at most 223 bytes")
        match = _IQN.fullmatch(value)
        if match is not None:
            if not 1 <= int(match.group(2)) <= 12:
                raise _error("iqn", f"{value!r}: {match.group(2)} is not a month")
            return value
        if _EUI.fullmatch(value) or _NAA.fullmatch(value):
            return value
        raise _error(
            "iqn",
            f"{value!r} is not an iSCSI name; expected iqn.YYYY-MM.reversed.domain[:name] "
            "(lower case letters, digits, '.', '-', ':'), eui.<16 hex> or naa.<16 or 32 hex>",
        )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        _check_remote_path(value)
        # ietd.conf and tgt's config split "Path=...,Type=..." on commas and blanks.
        if any(c.isspace() or c == "," for c in value):
            raise _error("path", f"{value!r}: the device path must not contain blanks or commas")
        return value


class Hypervisor(_Model):
    """The two hosts the guest migrates between."""

    driver: Literal["xen", "qemu"]
    """Hypervisor: "xen" (xl) or "qemu" (qemu-system with a QMP socket)."""

    toolstack: Literal["xl", "xm"] = "xl"
    """For driver = "xen": the Xen toolstack on the hosts, "xl" (Xen >= 4.1) or "xm"
    (Xen 3.x with xend, as in the 2009 study; migrates to xend's relocation port)."""

    hosts: list[str] = Field(json_schema_extra={"minItems": 2, "maxItems": 2, "uniqueItems": True})
    """Exactly two names of hosts in [hosts]; the guest boots on the first."""

    migrate_bandwidth_mbit: int | None = Field(default=None, ge=1, le=MAX_LINK_MBIT)
    """Cap on the migration's bandwidth in Mbit/s, 1 to 1000000. Default: lab.link_mbit."""

    downtime_limit_ms: int | None = Field(default=None, ge=1, le=MAX_DOWNTIME_MS)
    """Maximum stop-and-copy downtime to ask the hypervisor for, in ms, 1 to 2000000
    (QEMU's limit). Default: the hypervisor's own default."""

    run_dir: str = "/run/miglab"
    """For driver = "qemu": directory on the hypervisor hosts for QMP sockets and pid files."""

    convergence: Literal["none", "auto-converge", "raise-downtime"] = "auto-converge"
    """For driver = "qemu": what to do when pre-copy does not converge (a guest dirtying
    memory faster than the link sends it): throttle the guest's vCPUs (auto-converge),
    double the allowed downtime each time, or nothing."""

    convergence_after_syncs: int = Field(default=5, ge=1, le=MAX_CONVERGENCE_SYNCS)
    """For driver = "qemu": dirty-memory passes without finishing before the convergence
    policy acts, 1 to 1000 (Xen 3.x gave up after 29 iterations; Xen >= 4.6 after 5)."""

    @field_validator("run_dir")
    @classmethod
    def _run_dir(cls, value: str) -> str:
        return _check_remote_path(value)

    @field_validator("hosts")
    @classmethod
    def _two_hosts(cls, value: list[str]) -> list[str]:
        if len(value) != 2:
            raise _error(
                "hypervisor_hosts",
                f"needs exactly two hosts (the guest migrates from one to the other), "
                f"got {len(value)}",
            )
        if value[0] == value[1]:
            raise _error(
                "hypervisor_hosts", f"the two hosts must differ; {value[0]!r} is named twice"
            )
        return value


class QemuGuest(_Model):
    """How the qemu driver starts the guest on a hypervisor host (paths are on that host)."""

    kernel: str
    """Absolute path of the guest kernel on both hypervisor hosts (-kernel)."""

    initrd: str | None = None
    """Absolute path of the guest initramfs on both hypervisor hosts (-initrd)."""

    append: str = ""
    """Extra kernel command line (-append), e.g. the guest's network settings."""

    binary: str = "qemu-system-x86_64"
    """The QEMU program on the hypervisor hosts: a name looked up in PATH or a path."""

    accel: Literal["tcg", "kvm"] = "tcg"
    """CPU acceleration; tcg (software) works everywhere, kvm needs /dev/kvm."""

    tap: str | None = None
    """Tap device on each host the guest's NIC attaches to (None: no network)."""

    mac: str = Field(default="52:54:00:12:34:56", pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
    """The guest NIC's MAC address (the same on both hosts, so the guest keeps it)."""

    migration_port: int = Field(default=4444, ge=1, le=MAX_PORT)
    """TCP port the destination QEMU listens on for the incoming migration."""

    @field_validator("kernel", "initrd")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return None if value is None else _check_remote_path(value)

    @field_validator("binary")
    @classmethod
    def _binary(cls, value: str) -> str:
        return _check_program(value)


class Guest(_Model):
    """The virtual machine that is booted, measured and migrated."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    """Domain name of the guest (xl / QEMU -name)."""

    address: str
    """Host name or IP address the guest answers on (SSH and ping)."""

    user: str | None = None
    """SSH user in the guest. Default: ~/.ssh/config, else the current user."""

    port: int | None = Field(default=None, ge=1, le=MAX_PORT)
    """SSH port of the guest, 1 to 65535. Default: ~/.ssh/config, else 22."""

    identity: LocalPath | None = None
    """Private key file for SSH into the guest. Default: the agent and ~/.ssh keys."""

    via: str | None = None
    """Name of a host in [hosts] to jump through to reach the guest (like ssh -J)."""

    host_key: Literal["strict", "accept-new"] = "strict"
    """What to do with the guest's SSH host key when known_hosts does not have it yet."""

    known_hosts: LocalPath | None = None
    """known_hosts file for the guest. Default: ~/.ssh/config, else ~/.ssh/known_hosts."""

    transport: Literal["ssh", "plain-exec"] = "ssh"
    """How commands reach the guest; see hosts' transport."""

    vcpus: int = Field(ge=1, le=MAX_VCPUS)
    """Number of virtual CPUs, 1 to 4096."""

    memory_mb: int = Field(ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)
    """Memory of the guest in MiB (the amount a migration has to copy), 16 to 16777216
    (16 TiB)."""

    config: str | None = None
    """Absolute path of the domain config file on the hypervisor hosts.
    Required for driver = "xen" (the xl config); optional for "qemu"."""

    qemu: QemuGuest | None = None
    """For hypervisor driver = "qemu": how to start the guest ([guest.qemu])."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value == LOCAL:
            raise _error("address", 'the guest is a machine of its own; "local" is for hosts')
        return _check_address(value)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return _check_user(value)

    @field_validator("config")
    @classmethod
    def _config(cls, value: str | None) -> str | None:
        return None if value is None else _check_remote_path(value)


class Simulation(_Model):
    """What a simulated run (``miglab run --sim --lab F``) assumes that a lab.toml lacks.

    The real lab ignores this table. Each key left out takes the simulation's default,
    and the run's log header says which default and where it came from.
    """

    xen_version: str | None = Field(default=None, pattern=r"^[0-9]{1,2}\.[0-9]{1,2}$")
    """For driver = "xen": the Xen release the hosts run, MAJOR.MINOR (e.g. "4.17"); up to
    4.5 pre-copy follows migration stream v1's rules, from 4.6 on stream v2's.
    Default: 4.4 (the simulated hosts' Debian 8)."""

    qemu_version: str | None = Field(default=None, pattern=r"^[0-9]{1,2}\.[0-9]{1,2}$")
    """For driver = "qemu": the QEMU release the hosts run, MAJOR.MINOR (e.g. "10.0"); from
    9.2 on, auto-converge also syncs the dirty bitmap every 5 s. Default: 7.2 (Debian 12's,
    what the simulated hosts answer as)."""

    zero_fraction: float | None = Field(default=None, ge=0, le=1)
    """Of the guest's memory, the part that is zero when a migration starts, 0 to 1
    (QEMU sends a zero page as a 9-byte flag; Xen sends every page whole)."""

    dirtier_mib_s: float | None = Field(default=None, gt=0, le=100_000)
    """How fast the RAM dirtier writes in the guest when it has a vCPU to itself, MiB/s."""

    send_cores_per_mbit: float | None = Field(default=None, ge=0, le=1)
    """CPU cores the sending host spends per Mbit/s of migration stream."""

    sender_cores: float | None = Field(default=None, gt=0, le=1)
    """For driver = "qemu": the share of a core QEMU's migration thread gets on the
    sending host, above 0 and at most 1 (less than 1 on a host busy with other work)."""


class Console(_Model):
    """How a session watches the lab by itself, between and during actions and runs."""

    ping_interval_s: float = Field(default=0.1, ge=0.002, le=60)
    """Seconds between miglab's own pings of the guest, sent from the storage node while
    the guest runs (as the 2009 study did), in the console and in ``miglab run``: the
    resolution of every migration's unreachable time. 0.002 to 60; 0.1 by default;
    the console's key i changes it at run time.
    Below 0.2 s, iputils older than 20210722 want root on the storage node."""

    ping: bool = True
    """false: miglab does not ping the guest by itself (a scenario's ping probe still
    does)."""


class LabConfig(_Model):
    """A miglab lab: one storage node, two hypervisor hosts, one guest."""

    lab: Lab
    """Name and network of the lab."""

    hosts: dict[str, Host] = Field(
        json_schema_extra={"propertyNames": {"pattern": f"^{_NAME.pattern}$"}}
    )
    """The machines the console talks to, one [hosts.NAME] table each."""

    storage: Storage
    """The iSCSI target, on one of the hosts, that exports the guest's disk."""

    hypervisor: Hypervisor
    """The hypervisor and the two hosts the guest migrates between."""

    guest: Guest
    """The guest that is booted, measured and migrated."""

    simulation: Simulation | None = None
    """Assumptions for ``miglab run --sim --lab`` (ignored by the real lab)."""

    console: Console = Field(default_factory=Console)
    """What miglab does by itself in a session, the console's or a run's (its ping of
    the guest)."""

    _source_file: str | None = PrivateAttr(default=None)
    _digest: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_references(self) -> LabConfig:
        problems = _cross_check(self.model_dump())
        if problems:
            summary = "; ".join(f"{dotted_key(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError(_CROSS_CHECK, "{summary}", {"summary": summary})
        # Every host knows its name; every secret knows its key, for its error messages.
        for name, host in self.hosts.items():
            host._name = name
            if host.identity_passphrase is not None:
                host.identity_passphrase._key = f"hosts.{name}.identity_passphrase"
        if self.storage.chap is not None:
            self.storage.chap.secret._key = "storage.chap.secret"
        return self

    def host(self, name: str) -> Host:
        """The host called ``name``; KeyError names the hosts that exist."""
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts)
            raise KeyError(f"no host {name!r} in the lab; defined hosts: {known}") from None

    @property
    def hypervisor_hosts(self) -> tuple[Host, Host]:
        """The two hypervisor hosts, in [hypervisor].hosts order (the guest boots on the first)."""
        first, second = self.hypervisor.hosts
        return self.hosts[first], self.hosts[second]

    @property
    def storage_host(self) -> Host:
        """The host that runs the iSCSI target."""
        return self.hosts[self.storage.host]

    @property
    def migrate_bandwidth_mbit(self) -> int:
        """The migration bandwidth cap in effect: hypervisor.migrate_bandwidth_mbit or the link."""
        return self.hypervisor.migrate_bandwidth_mbit or self.lab.link_mbit

    @property
    def source_file(self) -> str | None:
        """The file this lab was loaded from, as given to :func:`load_lab` / :func:`parse_lab`."""
        return self._source_file

    @property
    def digest(self) -> str | None:
        """sha256 of the lab.toml text this lab was loaded from (see :func:`lab_digest`)."""
        return self._digest


# --------------------------------------------------------------------------- cross-references

_CROSS_CHECK = "lab_cross_check"


def _cross_check(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Checks that span tables: names of hosts, jump hosts, driver-specific keys.

    Runs on plain data (the raw TOML, or a model's dump) and skips whatever has
    the wrong shape, so the loader can report these alongside pydantic's type errors.
    """
    problems: list[tuple[Loc, str]] = []
    storage = data.get("storage")
    storage = storage if isinstance(storage, Mapping) else {}
    hypervisor = data.get("hypervisor")
    hypervisor = hypervisor if isinstance(hypervisor, Mapping) else {}
    guest = data.get("guest")
    guest = guest if isinstance(guest, Mapping) else {}

    # Keys that only make sense with one driver.
    driver = storage.get("driver")
    if storage.get("tgt_control_port") is not None and driver != "tgt":
        problems.append(
            (("storage", "tgt_control_port"), f'only for driver = "tgt", not {driver!r}')
        )
    # "xl" is the default: a dump of a qemu lab has it too.
    if hypervisor.get("toolstack") not in (None, "xl") and hypervisor.get("driver") != "xen":
        problems.append(
            (
                ("hypervisor", "toolstack"),
                f'only for driver = "xen", not {hypervisor.get("driver")!r}',
            )
        )
    if hypervisor.get("driver") == "xen" and guest and guest.get("config") is None:
        problems.append(
            (("guest", "config"), 'required for driver = "xen": the xl config of the guest')
        )
    if hypervisor.get("driver") == "qemu" and guest and guest.get("qemu") is None:
        problems.append(
            (("guest", "qemu"), 'required for driver = "qemu": a [guest.qemu] table with kernel')
        )

    raw_hosts = data.get("hosts")
    if not isinstance(raw_hosts, Mapping):
        return problems  # [hosts] is missing or not a table: every reference would be noise
    defined = list(raw_hosts)  # a host whose table is malformed still exists
    hosts = {name: table for name, table in raw_hosts.items() if isinstance(table, Mapping)}
    for name in defined:
        if not _NAME.fullmatch(name):
            problems.append((("hosts", name), "a host name uses letters, digits, '-' and '_' only"))

    def check_host(loc: Loc, name: Any) -> bool:
        if isinstance(name, str) and name not in defined:
            message = f"unknown host {name!r}; defined hosts: {', '.join(defined) or '(none)'}"
            problems.append((loc, message + did_you_mean(name, defined)))
            return False
        return isinstance(name, str)

    def check_via(loc: Loc, via: Any, own: str | None) -> None:
        if via is not None and via == own:
            problems.append((loc, "a host cannot be its own jump host"))
        elif check_host(loc, via) and hosts.get(via, {}).get("address") == LOCAL:
            problems.append(
                (loc, f"{via!r} is the console's own machine; connect directly (remove via)")
            )

    check_host(("storage", "host"), storage.get("host"))
    names = hypervisor.get("hosts")
    for i, name in enumerate(names if isinstance(names, list) else []):
        check_host(("hypervisor", "hosts", i), name)
    check_via(("guest", "via"), guest.get("via"), None)
    for name, host in hosts.items():
        if host.get("via") is not None and host.get("address") == LOCAL:
            problems.append(
                (("hosts", name, "via"), 'a host with address = "local" is not reached over SSH')
            )
        else:
            check_via(("hosts", name, "via"), host.get("via"), name)

    # Jump-host cycles, reported once each, on the first of their hosts in file order.
    reported: set[str] = set()
    for start in hosts:
        chain = [start]
        nxt = hosts[start].get("via")
        while isinstance(nxt, str) and nxt in hosts and nxt not in chain:
            chain.append(nxt)
            nxt = hosts[nxt].get("via")
        if isinstance(nxt, str) and nxt in chain and nxt != chain[-1]:  # a self-loop is above
            cycle = chain[chain.index(nxt) :]
            if not reported.intersection(cycle):
                reported.update(cycle)
                first = min(cycle, key=list(hosts).index)
                at = cycle.index(first)
                ring = [*cycle[at:], *cycle[:at], first]
                problems.append(
                    (("hosts", first, "via"), f"jump hosts form a cycle: {' -> '.join(ring)}")
                )
    return problems


# --------------------------------------------------------------------------- loader


def load_lab(path: str | os.PathLike[str]) -> LabConfig:
    """Read and validate a lab.toml. Raises :class:`ConfigError` (or :class:`ConfigErrors`).

    Relative local paths in the file are resolved against the file's directory.
    """
    base_dir = Path(os.fspath(path)).parent.absolute()
    config, raw = load_toml_file(
        path,
        "lab.toml file",
        LAB_MAX_BYTES,
        lambda text, file: parse_lab(text, file=file, base_dir=base_dir),
        missing="no such file (give one with --lab FILE)",
    )
    config._digest = lab_digest(raw)  # of the bytes on disk, BOM and line endings included
    return config


def parse_lab(text: str, file: str = "lab.toml", base_dir: Path | None = None) -> LabConfig:
    """Validate lab.toml text. ``file`` names it in errors; relative local paths resolve
    against ``base_dir`` (default: the current directory).

    Raises :class:`ConfigError` for one problem, :class:`ConfigErrors` for several.
    """
    body = text.removeprefix("\ufeff")  # editors on Windows like to add a BOM; tomllib does not
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise toml_syntax_error(exc, body, file) from None
    base = (base_dir if base_dir is not None else Path.cwd()).absolute()
    try:
        config = LabConfig.model_validate(data, context={"base_dir": base})
    except ValidationError as exc:
        raise _validation_errors(exc, data, body, file) from None
    config._source_file = file
    config._digest = lab_digest(text)
    return config


def lab_digest(text: str | bytes) -> str:
    """sha256 (hex) of a lab.toml's content, for the session log header."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def lab_json_schema() -> dict[str, Any]:
    """The JSON Schema of lab.toml (for ``miglab check --schema`` and editors)."""
    schema = LabConfig.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "miglab lab.toml",
    }


def _validation_errors(
    exc: ValidationError, data: Mapping[str, Any], text: str, file: str
) -> ConfigError:
    problems: list[tuple[Loc, str]] = []
    cross_summary = ""
    for err in exc.errors(include_url=False):
        if err["type"] == _CROSS_CHECK:
            cross_summary = err["msg"]
        else:
            problems.append((tuple(err["loc"]), describe_error(err, LabConfig)))
    # The model runs the cross-checks only once every field is valid; run them on the
    # raw data too so that one pass reports everything, each with its own key.
    for problem in _cross_check(data):
        if problem not in problems:
            problems.append(problem)
    if not problems:  # cannot happen unless the two runs disagree; never lose the message
        problems.append(((), cross_summary or str(exc)))
    lines = KeyLines(text)
    errors = [ConfigError(file, lines.line_for(loc), dotted_key(loc), msg) for loc, msg in problems]
    errors.sort(key=lambda e: (e.line is None, e.line or 0))
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)
