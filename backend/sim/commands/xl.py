"""``xl`` on the simulated Xen hosts: Xen 4.4's toolstack over the model's domains.

Xen 4.4 is the last xl with migration stream v1 (libxc ``xc_domain_save``), whose stop
rules are Xen 3.x's: the study's. Subcommands: ``list [-l] [DOM]``, ``info``,
``create CFG``, ``shutdown [-w] DOM``, ``destroy DOM``, ``migrate [-v] DOM HOST``.
Formats: xl_info.c, xl_cmdimpl.c, xl_migrate.c, libxc's DPRINTFs, as composed in
``tests/data/xl`` (``xl-migrate-v1-4.4-verbose.txt``) and the Xen 4.4.1 sources
(xl.c, xl_cmdimpl.c, xl_cmdtable.c, libxl.c) for every refusal: tables, help and 4.4's
``Parsing config from`` (a printf) go to stdout, everything else to stderr, as xl does.
``xl migrate``'s lines come out as the model's migration reaches
them, on the simulated clock; ``xl -v migrate`` adds libxc's per-round statistics and
the receiver's page counts. When the lab runs Xen 4.6 or later (``[simulation]
xen_version``, migration stream v2) a successful migration prints what xl 4.17 prints
(``tests/data/xl/real-4.17/xl-v-migrate-pvh-success.stderr``, a PV guest's libxc lines as
in ``tests/data/xl/xl-migrate-v2-4.17-verbose.txt``): the JSON config header and no
per-iteration lines at all (xl hides libxc's progress while it streams).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.sim.commands.base import Invocation
from backend.sim.memory import PAGE_SIZE
from backend.sim.model import TICK, DomainRow, Model, SimError
from backend.sim.precopy import PreCopy, Record
from backend.sim.precopy_rules import XenV2, parse_xen_version

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
XEN_VERSION = (4, 4, ".1")
POINT_RELEASES = {(4, 4): ".1", (4, 17): ".7"}
"""Debian 8's and Debian 12's Xen (``xen_extra``)."""
INVALID = "{dom} is an invalid domain identifier (rc=-6)"
_NAME_RE = re.compile(r"^\s*name\s*=\s*[\"']([^\"']*)[\"']", re.M)
_DISK_RE = re.compile(r"^\s*disk\s*=\s*\[\s*'(?:phy:)?([^,']+)", re.M)


def list_row(row: DomainRow) -> str:
    """xl_info.c ``list_domains``: ``"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"``."""
    numbers = f"{row.domid:5d} {row.mem_mib:5d} {row.vcpus:5d}"
    return f"{row.name:<40} {numbers}     {row.state}  {row.cpu_s:8.1f}"


def guest_config(name: str, memory_mib: int, vcpus: int, disk: str, mac: str) -> str:
    """The xl config file of the simulated guest (``/etc/xen/NAME.cfg`` on the Xen hosts)."""
    return (
        "# The simulated study's guest: Xen PV, its disk the iSCSI LUN on both hosts.\n"
        f'name = "{name}"\n'
        f"memory = {memory_mib}\n"
        f"vcpus = {vcpus}\n"
        'bootloader = "pygrub"\n'
        f"disk = [ 'phy:{disk},xvda,w' ]\n"
        f"vif = [ 'mac={mac},bridge=xenbr0' ]\n"
        'on_poweroff = "destroy"\n'
        'on_reboot = "restart"\n'
        'on_crash = "restart"\n'
    )


def guest_mac(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return "00:16:3e:" + ":".join(f"{b & 0x7F:02x}" for b in digest[:3])


@dataclass
class _Global:
    verbose: int = 0


async def xl(inv: Invocation) -> int:
    args = inv.argv[1:]
    opts = _Global()
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if re.fullmatch(r"-v+", flag):
            opts.verbose += len(flag) - 1
        elif flag not in ("-N", "-f", "-t", "-T"):
            # glibc's getopt, then xl.c main()
            await inv.err(f"xl: invalid option -- '{flag.lstrip('-')[:1]}'\n")
            await inv.err("unknown global option\n")
            return 2
    if not args:
        await inv.out(_full_help())
        return 1
    sub, rest = args[0], args[1:]
    handler = SUBCOMMANDS.get(sub)
    if handler is None:
        await inv.err("command not implemented\n")  # xl.c main()
        return 1
    try:
        return await handler(inv, rest, opts)
    except SimError as exc:  # the model's refusals are xl's own lines
        await inv.err(f"{exc}\n")
        return 1


@dataclass(frozen=True)
class _Spec:
    """A subcommand's entry in Xen 4.4's xl_cmdtable.c, for ``help()``."""

    modifies: bool
    can_dryrun: bool
    desc: str
    usage: str
    options: str | None = None


_SPECS = {
    "create": _Spec(
        True,
        True,
        "Create a domain from config file <filename>",
        "<ConfigFile> [options] [vars]",
        "-h                      Print this help.\n"
        "-p                      Leave the domain paused after it is created.\n"
        "-c                      Connect to the console after the domain is created.\n"
        "-f FILE, --defconfig=FILE\n                     Use the given configuration file.\n"
        "-q, --quiet             Quiet.\n"
        "-n, --dryrun            Dry run - prints the resulting configuration\n"
        "                         (deprecated in favour of global -N option).\n"
        "-d                      Enable debug messages.\n"
        "-e                      Do not wait in the background for the death of the domain.\n"
        "-V, --vncviewer         Connect to the VNC display after the domain is created.\n"
        "-A, --vncviewer-autopass\n"
        "                        Pass VNC password to viewer via stdin.",
    ),
    "list": _Spec(
        False,
        False,
        "List information about all/some domains",
        "[options] [Domain]\n",
        "-l, --long              Output all VM details\n"
        "-v, --verbose           Prints out UUIDs and security context\n"
        "-Z, --context           Prints out security context\n"
        "-n, --numa              Prints out NUMA node affinity",
    ),
    "destroy": _Spec(False, True, "Terminate a domain immediately", "<Domain>"),
    "shutdown": _Spec(
        False,
        True,
        "Issue a shutdown signal to a domain",
        "[options] <-a|Domain>",
        "-a, --all               Shutdown all guest domains.\n"
        "-h                      Print this help.\n"
        "-F                      Fallback to ACPI power event for HVM guests with\n"
        "                        no PV drivers.\n"
        "-w, --wait              Wait for guest(s) to shutdown.\n",
    ),
    "migrate": _Spec(
        False,
        True,
        "Migrate a domain to another host",
        "[options] <Domain> <host>",
        "-h              Print this help.\n"
        "-C <config>     Send <config> instead of config file from creation.\n"
        "-s <sshcommand> Use <sshcommand> instead of ssh.  String will be passed\n"
        "                to sh. If empty, run <host> instead of ssh <host> xl\n"
        "                migrate-receive [-d -e]\n"
        "-e              Do not wait in the background (on <host>) for the death\n"
        "                of the domain.\n"
        "--debug         Print huge (!) amount of debug during the migration process.",
    ),
    "info": _Spec(
        False,
        False,
        "Get information about Xen host",
        "-n, --numa         List host NUMA topology information",
    ),
}


def _help(command: str) -> str:
    """xl.c ``help(command)`` (stdout)."""
    spec = _SPECS[command]
    flags = "-v" + ("f" if spec.modifies else "") + ("N" if spec.can_dryrun else "")
    text = f"Usage: xl [{flags}] {command} {spec.usage}\n\n{spec.desc}.\n\n"
    if spec.options is not None:
        text += f"Options:\n\n{spec.options}\n"
    return text


def _full_help() -> str:
    """xl.c ``help(NULL)``, over the subcommands the simulated xl has."""
    rows = "".join(f" {name:<19} {spec.desc}\n" for name, spec in _SPECS.items())
    return f"Usage xl [-vfN] <subcommand> [args]\n\nxl full list of subcommands:\n\n{rows}"


async def _requires(inv: Invocation, command: str, count: int) -> int:
    """xl_cmdimpl.c ``def_getopt``: too few arguments; the exit code is 2."""
    plural = "s" if count > 1 else ""
    await inv.err(f"'xl {command}' requires at least {count} argument{plural}.\n\n")
    await inv.out(_help(command))
    return 2


# -- list, info ----------------------------------------------------------------------------


def _find(rows: list[DomainRow], dom: str) -> DomainRow | None:
    for row in rows:
        if dom == row.name or (dom.isdigit() and int(dom) == row.domid):
            return row
    return None


async def xl_list(inv: Invocation, args: list[str], opts: _Global) -> int:
    long = "-l" in args or "--long" in args
    names = [a for a in args if not a.startswith("-")]
    rows = inv.model.domains(inv.node.name)
    if names:
        dom = names[0]  # xl list takes one domain; it ignores more
        row = _find(rows, dom)
        if row is None and dom.isdigit():
            # find_domain takes any number; libxl_domain_info then finds no such domain
            await inv.err(f"Error: Domain '{dom}' does not exist.\n")
            return 6
        if row is None:
            await inv.err(INVALID.format(dom=dom) + "\n")
            return 1
        rows = [row]
    if long:
        await inv.out(json.dumps([_long(inv, r) for r in rows if r.domid != 0], indent=4) + "\n")
        return 0
    await inv.out("\n".join([LIST_HEADER, *(list_row(r) for r in rows)]) + "\n")
    return 0


def _long(inv: Invocation, row: DomainRow) -> dict[str, Any]:
    cfg = inv.node.read(_config_path(inv)) or ""
    disk = _DISK_RE.search(cfg)
    name = row.name
    return {
        "domid": row.domid,
        "config": {
            "c_info": {"type": "pv", "name": name, "uuid": _uuid(name)},
            "b_info": {
                "max_vcpus": row.vcpus,
                "max_memkb": row.mem_mib * 1024,
                "target_memkb": row.mem_mib * 1024,
                "type.pv": {"bootloader": "pygrub"},
            },
            "disks": [
                {
                    "pdev_path": disk[1] if disk else "",
                    "vdev": "xvda",
                    "backend": "phy",
                    "format": "raw",
                    "readwrite": 1,
                }
            ],
            "nics": [{"devid": 0, "mac": guest_mac(name), "bridge": "xenbr0"}],
            "on_reboot": "restart",
        },
    }


def _uuid(name: str) -> str:
    h = hashlib.sha256(("uuid:" + name).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _config_path(inv: Invocation) -> str:
    return inv.world.guest_config_path


def xen_version(model: Model) -> tuple[int, int, str]:
    """The Xen release the simulated hosts run: lab.toml's ``[simulation] xen_version``
    (4.17's point release as Debian 12 ships it), else 4.4.1."""
    prediction = model.params.prediction
    inputs = prediction.inputs if prediction is not None else ()
    given = next((a.value for a in inputs if a.key == "xen_version"), None)
    if not isinstance(given, str):
        return XEN_VERSION
    major, minor = parse_xen_version(given)
    return (major, minor, POINT_RELEASES.get((major, minor), ".0"))


def info_fields(inv: Invocation) -> list[tuple[str, str]]:
    model, host = inv.model, inv.node.name
    major, minor, extra = xen_version(model)
    total = model.params.host_memory_mib
    return [
        ("host", host),
        ("release", inv.node.kernel),
        ("version", "#1 SMP Debian 3.16.43-2+deb8u2 (2017-06-26)"),
        ("machine", "x86_64"),
        ("nr_cpus", str(model.params.host_cpus)),
        ("max_cpu_id", str(model.params.host_cpus - 1)),
        ("nr_nodes", "1"),
        ("cores_per_socket", str(model.params.host_cpus)),
        ("threads_per_core", "1"),
        ("cpu_mhz", "2400"),
        ("hw_caps", "bfebfbff:20000800:00000000:00000940:0000e3bd:00000000:00000001:00000000"),
        ("virt_caps", "hvm"),
        ("total_memory", str(total)),
        ("free_memory", str(model.free_memory_mib(host))),
        ("sharing_freed_memory", "0"),
        ("sharing_used_memory", "0"),
        ("outstanding_claims", "0"),
        ("free_cpus", "0"),
        ("xen_major", str(major)),
        ("xen_minor", str(minor)),
        ("xen_extra", extra),
        ("xen_version", f"{major}.{minor}{extra}"),
        ("xen_caps", "xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_64"),
        ("xen_scheduler", "credit"),
        ("xen_pagesize", "4096"),
        ("platform_params", "virt_start=0xffff800000000000"),
        ("xen_changeset", ""),
        ("xen_commandline", "placeholder dom0_mem=512M"),
        ("cc_compiler", "gcc (Debian 4.9.2-10) 4.9.2"),
        ("cc_compile_by", "pkg-xen-devel"),
        ("cc_compile_domain", "lists.alioth.debian.org"),
        ("cc_compile_date", "Mon Jun 12 18:49:40 UTC 2017"),
        ("xend_config_format", "4"),
    ]


async def xl_info(inv: Invocation, args: list[str], opts: _Global) -> int:
    """xl_cmdimpl.c ``main_info``: every field; 4.4 ignores words after ``info``."""
    fields = info_fields(inv)
    await inv.out("".join(f"{key:<23}: {value}\n" for key, value in fields))
    return 0


# -- create, shutdown, destroy -------------------------------------------------------------


async def xl_create(inv: Invocation, args: list[str], opts: _Global) -> int:
    """xl_cmdimpl.c ``main_create`` and ``create_domain`` (Xen 4.4): exit ``-rc``."""
    files = [a for a in args if not a.startswith("-") and "=" not in a]
    if not files:
        await inv.err("Config file not specified and none in save file\n")
        return 6  # ERROR_INVAL
    if len(files) > 1:
        await inv.out(_help("create"))
        return 2
    path = files[0]
    cfg = inv.node.read(path)
    if cfg is None:
        await inv.err(f"Failed to read config file: {path}: No such file or directory\n")
        return 3  # ERROR_FAIL
    if "-q" not in args and "--quiet" not in args:
        await inv.out(f"Parsing config from {path}\n")  # printf: stdout in 4.4
    name = _NAME_RE.search(cfg)
    if name is None:
        await inv.err("Domain name must be specified.\n")  # parse_config_data
        return 1
    if name[1] != inv.model.params.guest:
        # The simulated host has room for dom0 and the lab's one guest: another domain
        # does not fit (xl's freemem() gives up).
        await inv.err("failed to free memory for the domain\n")
        return 3
    disk = _DISK_RE.search(cfg)
    if disk is not None and not inv.world.disk_present(inv.node, disk[1]):
        await inv.err(
            "libxl: error: libxl_device.c:265:libxl__device_disk_set_backend: "
            f"Disk vdev=xvda failed to stat: {disk[1]}: No such file or directory\n"
            "libxl: error: libxl_create.c:1054:domcreate_launch_dm: "
            "unable to add disk devices\n"
        )
        return 3
    try:
        inv.model.boot(inv.node.name)
    except SimError:
        # The model has one guest: its name is taken (libxl__domain_rename's check).
        await inv.err(
            "libxl: error: libxl.c:319:libxl__domain_rename: domain with name "
            f'"{inv.model.params.guest}" already exists.\n'
            "libxl: error: libxl_create.c:743:initiate_domain_create: cannot make domain: -6\n"
        )
        return 6
    return 0


async def _domain(inv: Invocation, args: list[str], command: str) -> DomainRow | int:
    """The domain a subcommand names, or the exit code once xl has said why not."""
    names = [a for a in args if not a.startswith("-")]
    if not names:
        return await _requires(inv, command, 1)
    dom = names[0]
    row = _find(inv.model.domains(inv.node.name), dom)
    if row is None and not dom.isdigit():
        await inv.err(INVALID.format(dom=dom) + "\n")  # xl_utils.c find_domain
        return 1
    if row is not None and row.domid == 0 and command == "destroy":
        await inv.err("Cannot destroy privileged domain 0.\n\n")
        return 255
    if row is None:
        # A number is taken as a domid as it is; libxl then finds no such domain.
        if command == "destroy":
            await inv.err(
                f"libxl: error: libxl.c:1384:libxl__destroy_domid: non-existant domain {dom}\n"
                "destroy failed (rc=-6)\n"
            )
        else:
            await inv.err(
                f"Shutting down domain {dom}\n"
                "libxl: error: libxl_dom.c:35:libxl__domain_type: "
                f"unable to get domain type for domid={dom}\n"
                "shutdown failed (rc=-3)\n"
            )
        return 255
    return row


async def xl_shutdown(inv: Invocation, args: list[str], opts: _Global) -> int:
    row = await _domain(inv, args, "shutdown")
    if isinstance(row, int):
        return row
    if row.domid == 0:
        # dom0 is asked to power off through xenstore; the simulated one ignores it.
        await inv.err("Shutting down domain 0\n")
        return 0
    off_at = inv.model.shutdown(inv.node.name)
    await inv.err(f"Shutting down domain {row.domid}\n")
    if "-w" in args or "--wait" in args:
        await inv.err("Waiting for 1 domains\n")
        await inv.runtime.until(off_at)
        await inv.err(f"Domain {row.domid} has been shut down, reason code 0\n")
    return 0


async def xl_destroy(inv: Invocation, args: list[str], opts: _Global) -> int:
    row = await _domain(inv, args, "destroy")
    if isinstance(row, int):
        return row
    if row.name.endswith("--migratedaway"):
        return 0  # xl migrate destroys it itself in a moment
    if row.name.endswith("--incoming"):
        # The receiver's copy gone: the migration fails; before the suspend the guest
        # simply stays on the source.
        if not inv.model.abort_migration():
            await inv.err("destroy failed (rc=-3)\n")
            return 1
        return 0
    inv.model.destroy(inv.node.name)
    return 0


# -- migrate -------------------------------------------------------------------------------

_TRUNCATED = (
    "libxl: error: libxl_utils.c:393:libxl_read_exactly: file/stream truncated reading "
    "banner from migration receiver stream"
)


async def xl_migrate(inv: Invocation, args: list[str], opts: _Global) -> int:
    """xl_cmdimpl.c ``main_migrate`` (Xen 4.4): options ``FC:s:e`` and ``--debug``."""
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-C", "-s"):
            i += 2
            continue
        if arg == "-h":
            await inv.out(_help("migrate"))
            return 0
        if arg.startswith("-") and arg not in ("-F", "-e", "--debug"):
            # def_getopt: it says so and goes on
            await inv.err(f"option `{arg.lstrip('-')[:1]}' not supported.\n")
        if not arg.startswith("-"):
            positional.append(arg)
        i += 1
    if len(positional) < 2:
        return await _requires(inv, "migrate", 2)
    dom, host = positional[:2]  # more are ignored
    if _find(inv.model.domains(inv.node.name), dom) is None:
        await inv.err(INVALID.format(dom=dom) + "\n")
        return 1
    hostname = host.rpartition("@")[2]
    dest = inv.world.migration_peer(inv.node, hostname)
    if dest is None:
        await inv.err(
            f"ssh: Could not resolve hostname {hostname}: Name or service not known\n"
            f"{_TRUNCATED}\n"
            "libxl: info: libxl_exec.c:118:libxl_report_child_exitstatus: migration "
            "transport process [4242] exited with error status 255\n"
        )
        return 1
    if dest.role != "hypervisor":
        await inv.err(f"bash: line 1: xl: command not found\n{_TRUNCATED}\n")
        return 1
    if inv.model.migration is not None:
        return await _second_migration(inv)
    disk = _DISK_RE.search(inv.node.read(_config_path(inv)) or "")
    ready = disk is None or inv.world.disk_present(dest, disk[1])
    mig = inv.model.migrate(inv.node.name, dest.name, dest_ready=ready)
    try:
        return await _stream(inv, mig, opts.verbose, disk[1] if disk else "")
    finally:
        inv.model.abort_migration()  # only takes effect if xl stopped before the suspend


async def _second_migration(inv: Invocation) -> int:
    """Another ``xl migrate`` while one runs: the receiver cannot take the name
    ``GUEST--incoming`` (libxl__domain_rename), so the sender's stream breaks; the
    first migration goes on."""
    guest = inv.model.params.guest
    await inv.err(
        "migration target: Ready to receive domain.\n"
        "libxl: error: libxl.c:319:libxl__domain_rename: domain with name "
        f'"{guest}--incoming" already exists.\n'
        "libxl: error: libxl_create.c:743:initiate_domain_create: cannot make domain: -6\n"
        "migration target: Domain creation failed (code -6).\n"
        f"{_PLAIN['aborted'][0]}\n"
        "migration sender: libxl_domain_suspend failed (rc=-3)\n"
        "Migration failed, resuming at sender.\n"
    )
    return 1


async def _stream(inv: Invocation, mig: PreCopy, verbose: int, disk: str) -> int:
    renderer: _Renderer
    if isinstance(mig.rules, XenV2):
        model = inv.model

        def receiver() -> int:
            rows = model.domains(mig.dest)
            return next((r.domid for r in rows if r.name.endswith("--incoming")), 1)

        renderer = _RendererV2(
            mig.pages, verbose, model.params.guest, disk, model.guest.domid, receiver
        )
    else:
        renderer = _Renderer(mig.pages, verbose, inv.model.params.guest, disk)
    done = 0
    while True:
        while done < len(mig.records):
            record = mig.records[done]
            await inv.runtime.until(record.t)
            for line in renderer.lines(record):
                await inv.err(line + "\n")
            done += 1
            if record.kind == "done":
                return 0
            if record.kind in ("aborted", "resumed-at-source"):
                return 1
        await inv.runtime.until(inv.model.t + TICK)


class _Renderer:
    """Turns the model's migration records into xl's and libxc's lines (v1, Xen 4.4)."""

    def __init__(self, pages: int, verbose: int, guest: str, disk: str) -> None:
        self.pages = pages
        self.disk = disk
        self.verbose = verbose
        self.percent = 0
        self.optdata = 1071 + len(guest)

    def lines(self, r: Record) -> list[str]:
        v = self.verbose
        if r.kind == "receiver-ready":
            out = [
                "migration target: Ready to receive domain.",
                f"Saving to migration stream new xl format (info 0x0/0x0/{self.optdata})",
                "Loading new save file <incoming migration stream> "
                f"(new xl fmt info 0x0/0x0/{self.optdata})",
                " Savefile contains xl domain config",
            ]
            if v:
                out += _xc(f"xc_domain_restore start: p2m_size = {self.pages:x}")
            return out
        if r.kind == "creation-failed":
            return [
                "libxl: error: libxl_device.c:265:libxl__device_disk_set_backend: "
                f"Disk vdev=xvda failed to stat: {self.disk}: No such file or directory",
                "migration target: Domain creation failed (code -3).",
                "libxl: error: libxl_utils.c:393:libxl_read_exactly: file/stream truncated "
                "reading ready message from migration receiver stream",
                "libxl: info: libxl_exec.c:118:libxl_report_child_exitstatus: migration "
                "transport process [4242] exited with error status 3",
            ]
        if not v:
            return _PLAIN.get(r.kind, [])
        if r.kind == "stream-start":
            return _xc("Had 0 unexplained entries in p2m table")
        if r.kind == "batch":
            return self._progress(r.received)
        if r.kind == "round":
            return _xc(print_stats(r))
        if r.kind == "last-iteration":
            # The last iteration begins by suspending the guest: -vvv shows libxl's debug
            # line as it asks (libxl_dom.c, 4.4), when the model's stop window opens.
            asked = [_SUSPEND_REQUEST] if v >= 3 else []
            return [*_xc("Start last iteration"), *asked]
        if r.kind == "suspended":
            return _xc(f"SUSPEND shinfo {0x23F1A7:08x}")
        if r.kind == "memory-saved":
            factor = r.total_sent / self.pages
            return [
                *_xc(f"Total pages sent= {r.total_sent} ({factor:.2f}x)"),
                *_xc("(of which 0 were fixups)"),
                *_xc("All memory is saved"),
                *_xc("Save exit rc=0"),
            ]
        return _PLAIN.get(r.kind, [])

    def _progress(self, received: int) -> list[str]:
        """xtl_progress of the receiver: a line when the percentage changes."""
        percent = received * 100 // self.pages
        if percent == self.percent:
            return []
        level = "detail" if self.percent < percent < self.percent + 5 else "progress"
        self.percent = percent
        body = f"Reloading memory pages: {received}/{self.pages}  {percent:3d}%"
        return [f"xc: {level}: {body}"]


class _RendererV2(_Renderer):
    """What xl 4.17 prints of a migration (stream v2): phases only, no iteration lines.

    xl 4.17's ``xc:`` lines are at levels info and detail: ``-v`` shows them, and they
    end in no empty line (v2's messages carry no trailing newline). A failure prints
    4.4's lines (the 4.17 captures hold a success only).
    """

    def __init__(
        self,
        pages: int,
        verbose: int,
        guest: str,
        disk: str,
        sender: int,
        receiver: Callable[[], int],
    ) -> None:
        super().__init__(pages, verbose, guest, disk)
        self.optdata = 1490 + len(guest)  # the JSON config's length (xl_saverestore.c)
        self.sender = sender
        self.receiver = receiver
        """The receiving domain's id, once it exists (``xl list`` on the target)."""

    def lines(self, r: Record) -> list[str]:
        v = self.verbose
        if r.kind == "receiver-ready":
            out = [
                "migration target: Ready to receive domain.",
                f"Saving to migration stream new xl format (info 0x3/0x0/{self.optdata})",
                "Loading new save file <incoming migration stream> "
                f"(new xl fmt info 0x3/0x0/{self.optdata})",
                " Savefile contains xl domain config in JSON format",
                "Parsing config from <saved>",
            ]
            if v:
                sender = self.sender
                out += [
                    "libxl: detail: libxl_create.c:662:libxl__domain_make: passthrough: disabled",
                    f"xc: detail: fd 10, dom {sender}, flags 1, hvm 0",
                    f"xc: info: Saving domain {sender}, type x86 PV",
                    "xc: detail: 64 bits, 4 levels",
                    "xc: detail: max_mfn 0x83fff",
                    f"xc: detail: fd 4, dom {self.receiver()}, hvm 0, stream_type 0",
                    "xc: info: Found x86 PV domain from Xen 4.17",
                    "xc: info: Restoring domain",
                ]
            return out
        if r.kind == "creation-failed" or r.kind in ("resumed-at-source", "aborted"):
            return super().lines(r)
        if r.kind == "last-iteration":
            # -vvv: libxl's debug line as it asks the guest to suspend, when the model's
            # stop window opens (libxl_dom_suspend.c, 4.17; "PVH/HVM" for those guests).
            return [_SUSPEND_REQUEST_417.format(domid=self.sender)] if v >= 3 else []
        if r.kind == "transfer-complete":
            restored = [
                "xc: info: Restore successful",
                "xc: info: XenStore: mfn 0x7e0b2, dom 0, evt 1",
                "xc: info: Console: mfn 0x7e0b1, dom 0, evt 2",
            ]
            return [*(restored if v else []), *_PLAIN["transfer-complete"]]
        return _PLAIN.get(r.kind, []) if r.kind in ("resumed", "done") else []


_SUSPEND_REQUEST = (
    "libxl: debug: libxl_dom.c:1077:libxl__domain_suspend_common_callback: "
    "issuing PV suspend request via XenBus control node"
)
_SUSPEND_REQUEST_417 = (
    "libxl: debug: libxl_dom_suspend.c:203:domain_suspend_callback_common: "
    "Domain {domid}:issuing PV suspend request via XenBus control node"
)


def _xc(text: str) -> list[str]:
    # v1 DPRINTF strings end in "\n" and the logger adds one: an empty line follows.
    return [f"xc: detail: {text}", ""]


def print_stats(r: Record) -> str:
    """xc_domain_save.c ``print_stats``: rates in Mbit/s of 4 KiB pages."""
    ms = max(1, int(r.duration_s * 1000))
    per = ms * (1000 // 8)
    return (
        f"delta {ms}ms, dom0 {r.dom0_pct}%, target {r.guest_pct}%, "
        f"sent {r.sent * PAGE_SIZE // per}Mb/s, dirtied {r.dirtied * PAGE_SIZE // per}Mb/s "
        f"{r.dirtied} pages"
    )


_PLAIN: dict[str, list[str]] = {
    "transfer-complete": [
        "migration target: Transfer complete, requesting permission to start domain.",
        "migration sender: Target has acknowledged transfer.",
        "migration sender: Giving target permission to start.",
        "migration target: Got permission, starting domain.",
    ],
    # "successsfully": the triple s is in xl_migrate.c itself.
    "resumed": ["migration target: Domain started successsfully."],
    "done": ["migration sender: Target reports successful startup.", "Migration successful."],
    "resumed-at-source": ["Migration failed, resuming at sender."],
    # The receiver went away mid-stream (its copy destroyed); the guest never stopped.
    # Pages go out in runs, written by the "(4c)" write of xc_domain_save.c (4.4).
    "aborted": [
        "xc: error: Error when writing to state file (4c) (errno 32) (32 = Broken pipe): "
        "Internal error",
        "migration sender: libxl_domain_suspend failed (rc=-3)",
        "Migration failed, resuming at sender.",
    ],
}


SUBCOMMANDS = {
    "list": xl_list,
    "info": xl_info,
    "create": xl_create,
    "shutdown": xl_shutdown,
    "destroy": xl_destroy,
    "migrate": xl_migrate,
}
