"""A fake Xen ``xl`` (4.17): domains, host memory and live migration between two hosts.

Xen cannot run on this machine, so this module plays ``xl`` and the hypervisor under
it. Every line it prints follows the print format of the Xen source that prints it
(TOOL-FORMATS.md §1 and ``tests/data/xl``, whose README names each source function);
the driver's parser, :mod:`backend.drivers.parse_xl`, reads all of it. Like xl, it
writes tables to stdout and every diagnostic and progress message to stderr, and exits
0 or 1. Where a message's wording was not checked against Xen's source it says so.

Subcommands: ``list [-l] [DOMAIN]``, ``info [-n] [FIELD]``, ``create [-p] [-q] [-n]
CONFIG [KEY=VALUE...]``, ``shutdown [-a] [-w] [-F] DOMAIN``, ``destroy [-f] DOMAIN``,
``pause`` / ``unpause DOMAIN`` and ``[-v] migrate [options] DOMAIN HOST``. Global
options before the subcommand: ``-v`` (more libxc detail), ``-N``, ``-f``, ``-t``, ``-T``.

State: one host's JSON-serialisable dict (as for the fakes of :mod:`backend.sim.tools`), the
xl part under ``state["xen"]`` (:func:`new_state` builds it)::

    {"hostname": "xen1", "release": "6.1.0-23-amd64", "xen_version": "4.17.5-pre",
     "nr_cpus": 4, "total_memory": 8066,          # MiB; free = total - all domains
     "next_domid": 1,
     "domains": [{"name": "Domain-0", "domid": 0, "memory": 2048, "vcpus": 2,
                  "state": "r-----", "cpu_time": 1234.5}, ...],
     "configs": {"/etc/xen/guest.cfg": "name = 'guest'\\nmemory = 1024\\n..."},
     "fail_migrate": null,          # or "unreachable" | "target" | "handshake"
     "migrate_stage_delay_s": 0.0}  # main() only: pause between migration stages

A domain is ``{"name", "domid", "memory" (MiB), "vcpus", "state"`` (the 6 letters of
``xl list``), ``"cpu_time", "config"`` (the parsed xl.cfg, for ``xl list -l``),
``"pv_control"`` (false: the guest ignores ``xl shutdown``)``}``. A ``phy`` disk of a
new domain must exist on the host: a ``/dev/disk/by-path`` link of the iscsiadm fake's
sessions, or a device added with :func:`backend.sim.tools.add_device`.

Migration needs the destination host's state: ``run(..., peers=resolve)`` where
``resolve(HOST)`` returns the state of the host that ``HOST`` (as given to ``xl
migrate``) names, or None when no host has that name. The program (:func:`main`) reads
the peers from the environment variable ``MIGLAB_FAKE_PEERS``, a JSON object mapping
host names and addresses to state files. :func:`plan_migration` returns the migration
as :class:`Stage` s (stderr lines plus the state change at the end of each), so that a
model can space them in time; :func:`run` applies them all at once, :func:`main` with
``migrate_stage_delay_s`` between them (and rolls back a migration it is killed in
before the guest was suspended, as the receiver then destroys its copy).
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import getopt
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from backend.sim.tools import Result, device
from backend.sim.tools.iscsiadm import by_path_links
from tests.support.fake_tools import STATE_ENV, run_main

__all__ = [
    "PEERS_ENV",
    "Migration",
    "Stage",
    "add_config",
    "main",
    "new_state",
    "plan_migration",
    "run",
]

PROGRAM = "xl"
PEERS_ENV = "MIGLAB_FAKE_PEERS"
EXIT_SUCCESS = 0
EXIT_FAILURE = 1

# libxl_types.idl error codes
ERROR_FAIL = -3
ERROR_INVAL = -6
ERROR_NOPARAVIRT = -10

INCOMING = "--incoming"
MIGRATEDAWAY = "--migratedaway"
LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
FAILURES = ("unreachable", "target", "handshake")

Peers = Callable[[str], "dict[str, Any] | None"]


# --- state ---------------------------------------------------------------------------


def new_state(
    hostname: str,
    *,
    total_memory: int = 8066,
    dom0_memory: int = 2048,
    nr_cpus: int = 4,
    xen_version: str = "4.17.5-pre",
    release: str = "6.1.0-23-amd64",
) -> dict[str, Any]:
    """A Xen host with only Domain-0 running (goes under ``state["xen"]``)."""
    return {
        "hostname": hostname,
        "release": release,
        "xen_version": xen_version,
        "nr_cpus": nr_cpus,
        "total_memory": total_memory,
        "next_domid": 1,
        "domains": [
            {
                "name": "Domain-0",
                "domid": 0,
                "memory": dom0_memory,
                "vcpus": min(nr_cpus, 2),
                "state": "r-----",
                "cpu_time": 1234.5,
            }
        ],
        "configs": {},
        "fail_migrate": None,
        "migrate_stage_delay_s": 0.0,
    }


def add_config(state: dict[str, Any], path: str, text: str) -> None:
    """Put an xl.cfg file at ``path`` on the host."""
    _xen(state)["configs"][path] = text


def _xen(state: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = state.setdefault("xen", {})
    for key, value in new_state(own.get("hostname", "xen")).items():
        own.setdefault(key, value)
    return own


def _free_memory(own: dict[str, Any]) -> int:
    return int(own["total_memory"]) - sum(int(d["memory"]) for d in own["domains"])


def _find(own: dict[str, Any], qualifier: str) -> dict[str, Any] | None:
    """A domain by name or id (libxl_domain_qualifier_to_domid)."""
    for domain in own["domains"]:
        if domain["name"] == qualifier or (
            qualifier.isdigit() and domain["domid"] == int(qualifier)
        ):
            found: dict[str, Any] = domain
            return found
    return None


def _invalid(qualifier: str) -> Result:
    # xl_utils.c find_domain()
    return EXIT_FAILURE, "", f"{qualifier} is an invalid domain identifier (rc={ERROR_INVAL})\n"


def _remove(own: dict[str, Any], name: str) -> None:
    own["domains"] = [d for d in own["domains"] if d["name"] != name]


def _new_domid(own: dict[str, Any]) -> int:
    domid = int(own["next_domid"])
    own["next_domid"] = domid + 1
    return domid


# --- the command line ----------------------------------------------------------------


class _Exit(Exception):
    def __init__(self, code: int, stderr: str) -> None:
        self.code = code
        self.stderr = stderr


def _getopt(
    command: str, args: list[str], short: str, long: Sequence[str] = ()
) -> tuple[dict[str, list[str]], list[str]]:
    try:
        opts, rest = getopt.gnu_getopt(args, short, list(long))
    except getopt.GetoptError as exc:
        raise _Exit(2, f"{command}: {exc.msg}\n{_usage(command)}") from None
    parsed: dict[str, list[str]] = {}
    for name, value in opts:
        parsed.setdefault(name, []).append(value)
    return parsed, rest


_USAGES = {
    "list": "xl [-v] list [options] [Domain]",
    "info": "xl [-v] info [-n|--numa] [field]",
    "create": "xl [-vfNtT] create <ConfigFile> [options] [vars]",
    "shutdown": "xl [-v] shutdown [options] <-a|Domain>",
    "destroy": "xl [-v] destroy [options] <Domain>",
    "migrate": "xl [-v] migrate [options] <Domain> <host>",
    "pause": "xl [-v] pause <Domain>",
    "unpause": "xl [-v] unpause <Domain>",
}


def _usage(command: str) -> str:
    return f"Usage: {_USAGES.get(command, 'xl [-vfNtT] <subcommand> [args]')}\n"


def run(argv: list[str], state: dict[str, Any], peers: Peers | None = None) -> Result:
    """Run ``xl`` with ``argv`` (``argv[0]`` is the program name) on one host's ``state``.

    ``peers`` resolves the HOST of ``xl migrate``; without it no host is reachable.
    """
    own = _xen(state)
    args = argv[1:]
    verbose = 0
    while args and args[0].startswith("-") and len(args[0]) > 1:
        flags = args.pop(0)[1:]
        if any(c not in "vNftTA" for c in flags):
            return EXIT_FAILURE, "", _usage("")
        verbose += flags.count("v")
    if not args:
        return EXIT_FAILURE, "", _usage("")
    command, rest = args[0], args[1:]
    handlers: dict[str, Callable[[dict[str, Any], list[str]], Result]] = {
        "list": _list,
        "info": _info,
        "create": lambda own, rest: _create(own, rest, state),
        "shutdown": _shutdown,
        "destroy": _destroy,
        "pause": lambda own, rest: _pause(own, rest, "--p---"),
        "unpause": lambda own, rest: _pause(own, rest, "-b----"),
        "migrate": lambda own, rest: _migrate(state, rest, peers, verbose),
    }
    handler = handlers.get(command)
    if handler is None:
        return EXIT_FAILURE, "", "command not implemented\n"  # xl.c main()
    try:
        return handler(own, rest)
    except _Exit as exc:
        return exc.code, "", exc.stderr


# --- list, info -------------------------------------------------------------------------


def _row(domain: dict[str, Any]) -> str:
    # xl_info.c list_domains(): "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"
    return "%-40s %5d %5lu %5d     %s  %8.1f\n" % (  # noqa: UP031 - the C format itself
        domain["name"],
        domain["domid"],
        domain["memory"],
        domain["vcpus"],
        domain["state"],
        domain["cpu_time"],
    )


def _list(own: dict[str, Any], args: list[str]) -> Result:
    opts, rest = _getopt("list", args, "lvZcn", ["long", "verbose", "context", "cpupool", "numa"])
    domains = sorted(own["domains"], key=lambda d: int(d["domid"]))
    if rest:
        found = _find(own, rest[0])
        if found is None:
            return _invalid(rest[0])
        domains = [found]
    if "-l" in opts or "--long" in opts:
        # xl_info.c list_domains_details(): domains without a stored config are skipped.
        details = [_details(d) for d in domains if d.get("config") is not None]
        return EXIT_SUCCESS, json.dumps(details, indent=4) + "\n", ""
    return EXIT_SUCCESS, LIST_HEADER + "".join(_row(d) for d in domains), ""


def _details(domain: dict[str, Any]) -> dict[str, Any]:
    """``{"domid", "config"}`` as libxl_domain_config_to_json writes it (defaults left out)."""
    cfg = domain["config"]
    memkb = int(domain["memory"]) * 1024
    disks = [
        {
            "pdev_path": d["target"],
            "vdev": d["vdev"],
            "backend": "phy",
            "format": d.get("format", "raw"),
            **({"readwrite": 1} if d.get("access", "rw") in ("w", "rw") else {}),
        }
        for d in cfg.get("disks", [])
    ]
    nics = [
        {"devid": i, "mac": n.get("mac"), "bridge": n.get("bridge", "xenbr0")}
        for i, n in enumerate(cfg.get("nics", []))
    ]
    return {
        "domid": domain["domid"],
        "config": {
            "c_info": {
                "type": cfg.get("type", "pv"),
                "name": domain["name"],
                "uuid": cfg["uuid"],
                "run_hotplug_scripts": "True",
            },
            "b_info": {
                "max_vcpus": domain["vcpus"],
                "avail_vcpus": list(range(int(domain["vcpus"]))),
                "max_memkb": memkb,
                "target_memkb": memkb,
                "claim_mode": "False",
            },
            "disks": disks,
            "nics": nics,
            "on_reboot": cfg.get("on_reboot", "restart"),
            "on_soft_reset": "soft_reset",
        },
    }


def _info_fields(own: dict[str, Any]) -> list[tuple[str, str]]:
    """xl_info.c print_info(): host, physinfo and Xen fields in 4.17's order."""
    version = str(own["xen_version"])
    major, minor = version.split(".")[:2]
    extra = version[len(f"{major}.{minor}") :]
    cpus = int(own["nr_cpus"])
    return [
        ("host", str(own["hostname"])),
        ("release", str(own["release"])),
        ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.99-1 (2024-07-15)"),
        ("machine", "x86_64"),
        ("nr_cpus", str(cpus)),
        ("max_cpu_id", str(cpus - 1)),
        ("nr_nodes", "1"),
        ("cores_per_socket", str(max(1, cpus // 2))),
        ("threads_per_core", "2" if cpus > 1 else "1"),
        ("cpu_mhz", "2394.454"),
        ("hw_caps", "bfebfbff:77fafbff:2c100800:00000121:0000000f:009c6fbf:00000000:00000100"),
        (
            "virt_caps",
            "pv hvm hvm_directio pv_directio hap shadow iommu_hap_pt_share gnttab-v1 gnttab-v2",
        ),
        ("total_memory", str(own["total_memory"])),
        ("free_memory", str(_free_memory(own))),
        ("sharing_freed_memory", "0"),
        ("sharing_used_memory", "0"),
        ("outstanding_claims", "0"),
        ("free_cpus", "0"),
        ("xen_major", major),
        ("xen_minor", minor),
        ("xen_extra", extra),
        ("xen_version", version),
        ("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
        ("xen_scheduler", "credit2"),
        ("xen_pagesize", "4096"),
        ("platform_params", "virt_start=0xffff800000000000"),
        ("xen_changeset", ""),
        ("xen_commandline", "placeholder dom0_mem=2048M,max:2048M dom0_max_vcpus=2"),
        ("cc_compiler", "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"),
        ("cc_compile_by", "pkg-xen-devel"),
        ("cc_compile_domain", "lists.alioth.debian.org"),
        ("cc_compile_date", "Tue Aug 13 14:34:21 UTC 2024"),
        ("build_id", "2a4dfd6a8b1f0c5c8b3b8e0a6ad59e7aba1fbd1c"),
        ("xend_config_format", "4"),
    ]


def _info(own: dict[str, Any], args: list[str]) -> Result:
    _opts, rest = _getopt("info", args, "n", ["numa"])
    fields = _info_fields(own)
    if rest:
        # Since 4.9 a named field prints its value alone (maybe_printf).
        return EXIT_SUCCESS, "".join(f"{v}\n" for k, v in fields if k == rest[0]), ""
    return EXIT_SUCCESS, "".join(f"{k:<23}: {v}\n" for k, v in fields), ""


# --- create -----------------------------------------------------------------------------


def _parse_cfg(path: str, text: str) -> dict[str, Any]:
    """The ``key = value`` statements of an xl.cfg (values as Python literals).

    libxlu's own grammar is close enough to Python's literals for the keys a lab uses:
    strings in either quotes, integers, lists of strings; ``#`` comments.
    """
    values: dict[str, Any] = {}
    statement, start = "", 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not statement and (line.startswith("#") or not line):
            continue
        if not statement:
            start = lineno
        statement = f"{statement}\n{line}" if statement else line
        if statement.count("[") > statement.count("]"):
            continue  # a list spread over several lines (Python's parser skips comments)
        key, sep, value = statement.partition("=")
        statement = ""
        key = key.strip()
        try:
            if not sep or not key.isidentifier():
                raise ValueError
            values[key] = ast.literal_eval(value.strip().rstrip(";"))
        except (ValueError, SyntaxError):
            near = (value.strip() or key).splitlines()[0][:20]
            # libxlu_cfg.c's xlu__cfg_yyerror, then xl_parse.c (as in RELEASE-4.17.5)
            raise _Exit(
                EXIT_FAILURE,
                f"Parsing config from {path}\n"
                f"{path}:{start}: config parsing error near `{near}': syntax error\n"
                "Failed to parse config: Invalid argument\n",
            ) from None
    return values


def _disk(spec: str) -> dict[str, str]:
    """xl-disk-configuration(5): ``[phy:]TARGET,[FORMAT,]VDEV,ACCESS`` or key=value."""
    disk: dict[str, str] = {}
    positional: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        key, sep, value = part.partition("=")
        if sep and key in ("target", "vdev", "access", "format", "devtype", "backendtype"):
            disk[key] = value
        else:
            positional.append(part)
    if positional:
        target = positional.pop(0)
        for prefix in ("phy:", "file:", "tap:aio:", "aio:"):
            target = target.removeprefix(prefix)
        disk.setdefault("target", target)
        if len(positional) == 3:
            disk.setdefault("format", positional.pop(0))
        names = ("vdev", "access")
        for key, value in zip(names, positional, strict=False):
            disk.setdefault(key, value)
    return disk


def _nic(spec: str, name: str, index: int) -> dict[str, str]:
    nic = dict(p.strip().partition("=")[::2] for p in spec.split(",") if "=" in p)
    if "mac" not in nic:  # libxl picks 00:16:3e plus random bytes; ours are stable
        digest = hashlib.sha256(f"{name}/{index}".encode()).digest()
        nic["mac"] = "00:16:3e:" + ":".join(f"{b & 0x7F:02x}" for b in digest[:3])
    return nic


def _create(own: dict[str, Any], args: list[str], state: dict[str, Any]) -> Result:
    opts, rest = _getopt(
        "create", args, "Fnqf:pcdeV", ["dryrun", "quiet", "defconfig=", "vncviewer"]
    )
    named = opts.get("-f") or opts.get("--defconfig")
    config_path = named[-1] if named else None
    overrides = [r for r in rest if "=" in r]
    positional = [r for r in rest if "=" not in r]
    if config_path is None and positional:
        config_path = positional[0]
    if config_path is None:
        return EXIT_FAILURE, "", "Config file not specified\n"
    quiet = "-q" in opts or "--quiet" in opts
    text = own["configs"].get(config_path)
    if text is None:
        # xl_vmcontrol.c create_domain()
        return (
            EXIT_FAILURE,
            "",
            f"Failed to read config file: {config_path}: No such file or directory\n",
        )
    text += "".join(f"\n{o}" for o in overrides)
    err = "" if quiet else f"Parsing config from {config_path}\n"
    cfg = _parse_cfg(config_path, text)
    name = cfg.get("name")
    if not isinstance(name, str) or not name:
        return EXIT_FAILURE, "", err + "Domain name must be specified.\n"
    if "-n" in opts or "--dryrun" in opts:
        return EXIT_SUCCESS, "", err
    domid = int(own["next_domid"])
    if any(d["name"] == name for d in own["domains"]):
        # libxl_domain.c libxl__domain_rename() (called by libxl__domain_make), then
        # libxl_create.c initiate_domain_create(), lines of RELEASE-4.17.5
        return (
            EXIT_FAILURE,
            "",
            err
            + (
                f"libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain {domid}:Domain "
                f'with name "{name}" already exists.\n'
                f"libxl: error: libxl_create.c:1294:initiate_domain_create: Domain {domid}:cannot "
                f"make domain: {ERROR_INVAL}\n"
            ),
        )
    memory = int(cfg.get("memory", 128))
    if memory > _free_memory(own):
        return EXIT_FAILURE, "", err + "failed to free memory for the domain\n"
    disks = [_disk(str(spec)) for spec in cfg.get("disk", [])]
    for number, disk in enumerate(disks):
        target = disk.get("target", "")
        if target.startswith("/dev/") and not _device_exists(state, target):
            return (
                EXIT_FAILURE,
                "",
                err
                + (
                    f"libxl: error: libxl_device.c:397:libxl__device_disk_set_backend: Disk "
                    f"vdev={disk.get('vdev')} failed to stat: {target}: No such file or directory\n"
                    f"libxl: error: libxl_create.c:1309:initiate_domain_create: Domain {domid}:"
                    f"Unable to set disk defaults for disk {number}\n"
                ),
            )
    own["next_domid"] = domid + 1
    own["domains"].append(
        {
            "name": name,
            "domid": domid,
            "memory": memory,
            "vcpus": int(cfg.get("vcpus", 1)),
            "state": "--p---" if "-p" in opts else "-b----",
            "cpu_time": 0.0,
            "pv_control": True,
            "config": {
                "type": cfg.get("type", "pv"),
                "uuid": _uuid(str(own["hostname"]), name, domid),
                "disks": disks,
                "nics": [_nic(str(spec), name, i) for i, spec in enumerate(cfg.get("vif", []))],
                "on_reboot": cfg.get("on_reboot", "restart"),
            },
        }
    )
    return EXIT_SUCCESS, "", err


def _device_exists(state: dict[str, Any], path: str) -> bool:
    if device(state, path) is not None:
        return True
    if "iscsiadm" in state:  # the disks of the iscsiadm fake's sessions
        return path in by_path_links(state)
    return False


def _uuid(*parts: object) -> str:
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


# --- shutdown, destroy, pause ----------------------------------------------------------


def _shutdown(own: dict[str, Any], args: list[str]) -> Result:
    opts, rest = _getopt("shutdown", args, "awFc", ["all", "wait"])
    if "-a" in opts or "--all" in opts:
        targets = [d for d in own["domains"] if d["domid"] != 0]
    elif rest:
        found = _find(own, rest[0])
        if found is None:
            return _invalid(rest[0])
        targets = [found]
    else:
        raise _Exit(EXIT_FAILURE, _usage("shutdown"))
    fallback = "-F" in opts
    err: list[str] = []
    for domain in targets:
        # xl_vmcontrol.c shutdown_domain()
        err.append(f"Shutting down domain {domain['domid']}")
        if not domain.get("pv_control", True):
            if not fallback:
                err += [
                    "PV control interface not available: external graceful shutdown not possible.",
                    'Use "-F" to fallback to ACPI power event.',
                    f"shutdown failed (rc={ERROR_NOPARAVIRT})",
                ]
                return EXIT_FAILURE, "", "\n".join(err) + "\n"
            err.append("PV control interface not available: sending ACPI power button event.")
    if "-w" in opts or "--wait" in opts:
        err.append(f"Waiting for {len(targets)} domains")  # wait_for_domain_deaths()
        err += [f"Domain {d['domid']} has been shut down, reason code 0" for d in targets]
    for domain in targets:  # on_poweroff = "destroy", libxl's default
        _remove(own, domain["name"])
    return EXIT_SUCCESS, "", "".join(f"{line}\n" for line in err)


def _destroy(own: dict[str, Any], args: list[str]) -> Result:
    opts, rest = _getopt("destroy", args, "f")
    if not rest:
        raise _Exit(EXIT_FAILURE, _usage("destroy"))
    found = _find(own, rest[0])
    if found is None:
        return _invalid(rest[0])
    if found["domid"] == 0 and "-f" not in opts:
        # xl_vmcontrol.c main_destroy() (as in RELEASE-4.17.5)
        return EXIT_FAILURE, "", "Not destroying domain 0; use -f to force.\n"
    _remove(own, found["name"])
    return EXIT_SUCCESS, "", ""  # xl destroy prints nothing on success


def _pause(own: dict[str, Any], args: list[str], new_state_letters: str) -> Result:
    if not args:
        raise _Exit(EXIT_FAILURE, _usage("pause"))
    found = _find(own, args[0])
    if found is None:
        return _invalid(args[0])
    found["state"] = new_state_letters
    return EXIT_SUCCESS, "", ""


# --- migrate ----------------------------------------------------------------------------


@dataclass
class Stage:
    """One step of a migration: the stderr lines xl prints in it, then what changes.

    ``apply(source_state, dest_state)`` takes the two hosts' whole states; it finds the
    domains by name, so it may run on states reloaded since the plan was made.
    """

    name: str
    lines: list[str]
    apply: Callable[[dict[str, Any], dict[str, Any] | None], None] = lambda src, dst: None


@dataclass
class Migration:
    """A whole ``xl migrate``: its stages, xl's exit status, and what a kill undoes."""

    stages: list[Stage]
    exit_code: int
    # Applied when xl is killed after ``stages[:done]``: before the guest was suspended
    # the receiver destroys its copy and the guest runs on at the source.
    rollback: Callable[[int, dict[str, Any], dict[str, Any] | None], None] = field(
        default=lambda done, src, dst: None
    )


def _migrate(state: dict[str, Any], args: list[str], peers: Peers | None, verbose: int) -> Result:
    opts, rest = _getopt("migrate", args, "hC:s:epFD", ["debug", "live"])
    if "-h" in opts or len(rest) != 2:
        raise _Exit(EXIT_FAILURE if "-h" not in opts else EXIT_SUCCESS, _usage("migrate"))
    domain, host = rest
    dest = peers(host) if peers is not None else None
    plan = plan_migration(state, domain, host, dest, verbose=verbose, unpause="-p" not in opts)
    if isinstance(plan, tuple):
        return plan
    lines: list[str] = []
    for stage in plan.stages:
        stage.apply(state, dest)
        lines += stage.lines
    return plan.exit_code, "", "".join(f"{line}\n" for line in lines)


def plan_migration(
    state: dict[str, Any],
    domain: str,
    host: str,
    dest: dict[str, Any] | None,
    *,
    verbose: int = 1,
    unpause: bool = True,
) -> Migration | Result:
    """The stages of ``xl [-v] migrate DOMAIN HOST`` from the host whose state is
    ``state`` to ``dest`` (None: no host of that name). Returns a Result instead when xl
    would stop before migrating (unknown domain). ``fail_migrate`` in the source's state
    picks a failure: ``unreachable`` (ssh refused), ``target`` (the receiver cannot start
    the guest; it resumes at the source), ``handshake`` (the receiver dies after GO: both
    copies are left, neither runs). A destination without the guest's memory free fails
    as the real receiver does."""
    own = _xen(state)
    found = _find(own, domain)
    if found is None or found["domid"] == 0:
        return _invalid(domain)
    name, domid = found["name"], int(found["domid"])
    mode = own.get("fail_migrate")
    if dest is None or mode == "unreachable":
        lines = _no_receiver(host, resolved=dest is not None)
        return Migration([Stage("failed", lines)], EXIT_FAILURE)
    theirs = _xen(dest)
    config_json = json.dumps(_details(found)["config"]) if found.get("config") else "{}"
    optlen = len(config_json) + 1
    new_domid = int(theirs["next_domid"])
    major, minor = str(own["xen_version"]).split(".")[:2]

    def detail(text: str) -> list[str]:
        return [f"xc: detail: {text}"] if verbose else []

    header = [
        "migration target: Ready to receive domain.",
        f"Saving to migration stream new xl format (info 0x3/0x0/{optlen})",
        f"Loading new save file <incoming migration stream> (new xl fmt info 0x3/0x0/{optlen})",
        " Savefile contains xl domain config in JSON format",
        "Parsing config from <saved>",
    ]
    saving = [
        *detail(f"fd 10, dom {domid}, flags 1, hvm 0"),
        f"xc: info: Saving domain {domid}, type x86 PV",
    ]
    if int(found["memory"]) > _free_memory(theirs):
        # The receiver's create_domain() cannot make room; the sender's stream breaks.
        return Migration(
            [
                Stage(
                    "failed",
                    [
                        *header,
                        "failed to free memory for the domain",
                        f"migration target: Domain creation failed (code {ERROR_FAIL}).",
                        *saving,
                        f"migration sender: libxl_domain_suspend failed (rc={ERROR_FAIL})",
                        "Migration failed, resuming at sender.",
                    ],
                )
            ],
            EXIT_FAILURE,
        )

    def start(src: dict[str, Any], dst: dict[str, Any] | None) -> None:
        assert dst is not None
        target = _xen(dst)
        copy = {**found, "name": name + INCOMING, "domid": _new_domid(target)}
        copy.update(state="--p---", cpu_time=0.0)
        target["domains"].append(copy)

    def suspend(src: dict[str, Any], dst: dict[str, Any] | None) -> None:
        for d in _xen(src)["domains"]:
            if d["name"] == name:  # suspended, then renamed away just before GO
                d.update(name=name + MIGRATEDAWAY, state="---ss-")

    def go(src: dict[str, Any], dst: dict[str, Any] | None) -> None:
        assert dst is not None
        _remove(_xen(src), name + MIGRATEDAWAY)
        for d in _xen(dst)["domains"]:
            if d["name"] == name + INCOMING:
                d.update(name=name, state="-b----" if unpause else "--p---")

    def resume(src: dict[str, Any], dst: dict[str, Any] | None) -> None:
        assert dst is not None
        _remove(_xen(dst), name + INCOMING)
        for d in _xen(src)["domains"]:
            if d["name"] == name + MIGRATEDAWAY:
                d.update(name=name, state="-b----")

    def rollback(done: int, src: dict[str, Any], dst: dict[str, Any] | None) -> None:
        if done <= 1 and dst is not None:  # still pre-copying: nothing was suspended
            _remove(_xen(dst), name + INCOMING)

    received = [
        *detail("64 bits, 4 levels"),
        *detail("max_mfn 0x83fff"),
        *detail(f"fd 4, dom {new_domid}, hvm 0, stream_type 0"),
        f"xc: info: Found x86 PV domain from Xen {major}.{minor}",
        "xc: info: Restoring domain",
    ]
    restored = [
        "xc: info: Restore successful",
        f"xc: info: XenStore: mfn {0x7E0B2 + 2 * new_domid:#x}, dom 0, evt 1",
        f"xc: info: Console: mfn {0x7E0B1 + 2 * new_domid:#x}, dom 0, evt 2",
        "migration target: Transfer complete, requesting permission to start domain.",
        "migration sender: Target has acknowledged transfer.",
        "migration sender: Giving target permission to start.",
    ]
    # -vvv: libxl's debug lines around the suspend (libxl_dom_suspend.c, as captured in
    # tests/data/xl/real-4.17/xl-vvv-migrate-pvh-success.stderr).
    suspending = (
        [
            f"libxl: debug: libxl_dom_suspend.c:203:domain_suspend_callback_common: "
            f"Domain {domid}:issuing PV suspend request via XenBus control node",
            f"libxl: debug: libxl_dom_suspend.c:358:suspend_common_wait_guest_check: "
            f"Domain {domid}:guest has suspended",
        ]
        if verbose >= 3
        else []
    )
    stages = [
        Stage("start", [*header, *saving, *received], start),
        Stage("suspend", [*suspending, *restored], suspend),
    ]
    if mode == "target":
        stages.append(
            Stage(
                "failed",
                [
                    "migration target: Got permission, starting domain.",
                    "migration target: Failure, destroying our copy.",
                    "migration sender: Target reports startup failure "
                    f"(status code {-ERROR_FAIL}).",
                    "migration target: Cleanup OK, granting sender permission to resume.",
                    "migration sender: Trying to resume at our end.",
                    "migration sender: Resumed OK.",
                    "Migration failed due to problems at target.",
                ],
                resume,
            )
        )
        return Migration(stages, EXIT_FAILURE, rollback)
    if mode == "handshake":
        # The receiver died after GO: both copies stay as they are (xl_migrate.c failed_badly).
        stages.append(
            Stage(
                "failed",
                [
                    "libxl: error: libxl_utils.c:497:libxl_read_exactly: file/stream truncated "
                    "reading success/failure report message from migration receiver stream",
                    "** Migration failed during final handshake **",
                    "Domain state is now undefined !",
                    "Please CHECK AT BOTH ENDS for running instances, before renaming and",
                    " resuming at most one instance.  Two simultaneous instances of the domain",
                    " would probably result in SEVERE DATA LOSS and it is now your",
                    " responsibility to avoid that.  Sorry.",
                ],
            )
        )
        return Migration(stages, EXIT_FAILURE, rollback)
    stages.append(
        Stage(
            "go",
            [
                "migration target: Got permission, starting domain.",
                "migration target: Domain started successsfully.",  # sic, xl_migrate.c
                "migration sender: Target reports successful startup.",
                "Migration successful.",
            ],
            go,
        )
    )
    return Migration(stages, EXIT_SUCCESS, rollback)


def _no_receiver(host: str, resolved: bool) -> list[str]:
    # ssh's own message, then libxl's (libxl_utils.c, libxl_exec.c) as the banner never came.
    why = (
        f"ssh: connect to host {host} port 22: Connection refused"
        if resolved
        else f"ssh: Could not resolve hostname {host}: Name or service not known"
    )
    return [
        why,
        "libxl: error: libxl_utils.c:497:libxl_read_exactly: file/stream truncated reading "
        "banner from migration receiver stream",
        "libxl: info: libxl_exec.c:117:libxl_report_child_exitstatus: migration transport "
        f"process [{4242}] exited with error status 255",
    ]


# --- the program ------------------------------------------------------------------------


def _read(path: str) -> dict[str, Any]:
    with open(path) as handle:
        text = handle.read()
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise SystemExit(f"xl: fake state {path} is not a JSON object")
    return data


@contextlib.contextmanager
def _locked(paths: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Lock the state files (in one global order: no deadlock), load them, save them."""
    order = sorted(set(paths))
    handles = {p: open(p, "a+") for p in order}  # closed in the finally below
    try:
        for p in order:
            fcntl.flock(handles[p], fcntl.LOCK_EX)
        states = {p: _read(p) for p in order}
        yield [states[p] for p in paths]
        for p in order:
            with open(p, "w") as out:
                out.write(json.dumps(states[p], indent=1, sort_keys=True) + "\n")
    finally:
        for handle in handles.values():
            handle.close()


def _peer_files() -> dict[str, str]:
    text = os.environ.get(PEERS_ENV, "")
    files = json.loads(text) if text.strip() else {}
    if not isinstance(files, dict):
        raise SystemExit(f"xl: {PEERS_ENV} must be a JSON object of host -> state file")
    return {str(k): str(v) for k, v in files.items()}


class _Killed(Exception):
    pass


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Killed


def _migrate_main(state_path: str, args: list[str]) -> int:
    """``xl migrate`` as a program: stage by stage, the states saved after each."""
    files = _peer_files()
    verbose = 0
    while args and args[0].startswith("-") and set(args[0][1:]) <= set("vNftTA"):
        verbose += args.pop(0).count("v")
    opts, rest = _getopt("migrate", args[1:], "hC:s:epFD", ["debug", "live"])
    if len(rest) != 2:
        sys.stderr.write(_usage("migrate"))
        return EXIT_FAILURE
    domain, host = rest
    dest_path = files.get(host)
    if dest_path is not None and os.path.abspath(dest_path) == os.path.abspath(state_path):
        dest_path = None  # a host cannot receive from itself here
    paths = [state_path] + ([dest_path] if dest_path else [])
    with _locked(paths) as states:
        src = states[0]
        dst = states[1] if dest_path else None
        plan = plan_migration(src, domain, host, dst, verbose=verbose, unpause="-p" not in opts)
        delay = float(_xen(src).get("migrate_stage_delay_s") or 0.0)
    if isinstance(plan, tuple):
        code, out, err = plan
        sys.stdout.write(out)
        sys.stderr.write(err)
        return code
    done = 0
    signal.signal(signal.SIGTERM, _on_term)
    try:
        for number, stage in enumerate(plan.stages):
            if number and delay:
                time.sleep(delay)  # a program of its own: nothing else waits on this thread
            with _locked(paths) as states:
                stage.apply(states[0], states[1] if dest_path else None)
            done += 1
            sys.stderr.write("".join(f"{line}\n" for line in stage.lines))
            sys.stderr.flush()
    except _Killed:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with _locked(paths) as states:
            plan.rollback(done, states[0], states[1] if dest_path else None)
        return 128 + signal.SIGTERM
    return plan.exit_code


def main() -> None:
    """``python -m tests.support.fake_tools.xl ARGS``: state in ``$MIGLAB_FAKE_STATE``."""
    args = sys.argv[1:]
    words = [a for a in args if not (a.startswith("-") and set(a[1:]) <= set("vNftTA"))]
    if words[:1] == ["migrate"]:
        state_path = os.environ.get(STATE_ENV)
        if not state_path:
            sys.stderr.write(f"xl: fake tool: set {STATE_ENV} to a JSON state file\n")
            sys.exit(2)
        sys.exit(_migrate_main(state_path, args))
    run_main(PROGRAM, run)


if __name__ == "__main__":
    main()
