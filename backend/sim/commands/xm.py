"""``xm`` on the simulated Xen hosts: Xen 3.x's toolstack (xend) over the model's domains.

For labs with ``[hypervisor] toolstack = "xm"``, the study's toolstack. Subcommands:
``list [DOM...]``, ``info``, ``create CFG``, ``shutdown [-w] DOM``, ``destroy DOM``,
``migrate [-l|--live] DOM HOST``. Formats: the published captures in ``tests/data/xm``
and xend's source (Xen 3.4.4 ``tools/python/xen``; the README there names each). The
migration is the model's pre-copy, the same as ``xl``'s; xm prints nothing while it
runs and nothing when it worked. Meanwhile the source copy is ``migrating-NAME``
(XendCheckpoint.save) and the destination's copy, paused until it is restored, has the
guest's name.
"""

from __future__ import annotations

from backend.drivers.parse_xm import MIGRATING_PREFIX
from backend.sim.commands.base import Invocation
from backend.sim.commands.xl import _DISK_RE, _NAME_RE
from backend.sim.model import TICK, DomainRow, SimError

XEN_VERSION = (3, 3, ".0")
# xm/main.py _run_cmd: an unknown domain exits with xend's fault code, 3.
EXIT_INVALID_DOMAIN = 3
EXIT_ERROR = 1
# What xm prints after most errors of `xm migrate`: the usage, as the Xen 3.2 capture
# (tests/data/xm/xm-migrate-3.2-xc_save-failed.txt) shows it.
MIGRATE_USAGE = """\
Usage: xm migrate <Domain> <Host>

Migrate a domain to another machine.

Options:

-h, --help           Print this help.
-l, --live           Use live migration.
-p=portnum, --port=portnum
                     Use specified port for migration.
-n=nodenum, --node=nodenum
                     Use specified NUMA node on target.
-s, --ssl            Use ssl connection for migration.

"""


def xm_state(xl_letters: str) -> str:
    """The model's xl state letters (``rbps`` + shutdown reason + ``d``) as xm's
    ``rbpscd``: a crash is a letter of its own, the shutdown reason is not shown."""
    crashed = xl_letters[3] == "s" and xl_letters[4] == "c"
    shutdown = "-" if crashed else xl_letters[3]
    return xl_letters[:3] + shutdown + ("c" if crashed else "-") + xl_letters[5]


def xm_rows(inv: Invocation) -> list[DomainRow]:
    """The host's domains with xend's names: during a migration the source copy is
    ``migrating-NAME`` and the incoming one is NAME."""
    guest = inv.model.params.guest
    mig = inv.model.migration
    source = mig is not None and mig.source == inv.node.name
    rows = []
    for row in inv.model.domains(inv.node.name):
        name = row.name
        if source and name in (guest, f"{guest}--migratedaway"):
            name = MIGRATING_PREFIX + guest
        elif name == f"{guest}--incoming":
            name = guest
        rows.append(DomainRow(name, row.domid, row.mem_mib, row.vcpus, row.state, row.cpu_s))
    return rows


def list_row(row: DomainRow) -> str:
    """xm/main.py ``xm_brief_list``: ``%(name)-40s %(domid)5s %(mem)5d %(vcpus)5d
    %(state)10s %(cpu_time)8.1f``."""
    return (
        f"{row.name:<40} {row.domid:>5} {row.mem_mib:5d} {row.vcpus:5d} "
        f"{xm_state(row.state):>10} {row.cpu_s:8.1f}"
    )


LIST_HEADER = f"{'Name':<40} {'ID':>5} {'Mem':>5} {'VCPUs':>5} {'State':>10} {'Time(s)':>9}"


async def _no_domain(inv: Invocation, dom: str) -> int:
    await inv.err(f"Error: Domain '{dom}' does not exist.\n")
    return EXIT_INVALID_DOMAIN


def _find(rows: list[DomainRow], dom: str) -> DomainRow | None:
    return next((r for r in rows if dom in (r.name, str(r.domid))), None)


async def xm(inv: Invocation) -> int:
    args = inv.argv[1:]
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "list":
        rows = xm_rows(inv)
        names = [a for a in rest if not a.startswith("-")]
        for dom in names:
            if _find(rows, dom) is None:
                return await _no_domain(inv, dom)
        shown = [r for r in rows if not names or r.name in names or str(r.domid) in names]
        await inv.out("\n".join([LIST_HEADER, *(list_row(r) for r in shown)]) + "\n")
        return 0
    if command == "info":
        await inv.out("".join(f"{key:<23}: {value}\n" for key, value in info_fields(inv)))
        return 0
    if command == "create" and rest:
        return await xm_create(inv, rest[0])
    if command in ("shutdown", "destroy"):
        return await _stop(inv, command, rest)
    if command == "migrate":
        return await xm_migrate(inv, [a for a in rest if a not in ("-l", "--live")])
    # xm/main.py main(): err('Subcommand %s not found!' % cmd_name), then the usage.
    await inv.err(f"Error: Subcommand {command} not found!\n")
    return EXIT_ERROR


def info_fields(inv: Invocation) -> list[tuple[str, str]]:
    """The keys of xm info of Xen 3.3 (the capture), with the simulated host's values."""
    model, host = inv.model, inv.node.name
    major, minor, extra = XEN_VERSION
    cpus = model.params.host_cpus
    return [
        ("host", host),
        ("release", inv.node.kernel),
        ("version", "#1 SMP Mon Aug 30 10:02:38 UTC 2010"),
        ("machine", "x86_64"),
        ("nr_cpus", str(cpus)),
        ("nr_nodes", "1"),
        ("cores_per_socket", str(cpus)),
        ("threads_per_core", "1"),
        ("cpu_mhz", "2400"),
        ("hw_caps", "bfebfbff:20100000:00000000:00000140:0008e3bd:00000000:00000001:00000000"),
        ("virt_caps", ""),
        ("total_memory", str(model.params.host_memory_mib)),
        ("free_memory", str(model.free_memory_mib(host))),
        ("node_to_cpu", f"node0:0-{cpus - 1}"),
        ("node_to_memory", f"node0:{model.free_memory_mib(host)}"),
        ("xen_major", str(major)),
        ("xen_minor", str(minor)),
        ("xen_extra", extra),
        ("xen_caps", "xen-3.0-x86_64 xen-3.0-x86_32p"),
        ("xen_scheduler", "credit"),
        ("xen_pagesize", "4096"),
        ("platform_params", "virt_start=0xffff800000000000"),
        ("xen_changeset", "unavailable"),
        ("cc_compiler", "gcc version 4.3.2 (Ubuntu 4.3.2-1ubuntu12)"),
        ("cc_compile_by", "buildd"),
        ("cc_compile_domain", "buildd"),
        ("cc_compile_date", "Mon Mar  9 10:34:08 UTC 2009"),
        ("xend_config_format", "4"),
    ]


async def xm_create(inv: Invocation, path: str) -> int:
    cfg = inv.node.read(path)
    if cfg is None:
        # xm/opts.py load_defconfig: OptionError (the usage that follows is left out).
        await inv.err(f"Error: Unable to open config file: {path}\n")
        return EXIT_ERROR
    await inv.out(f'Using config file "{path}".\n')  # xm/create.py make_config
    name = _NAME_RE.search(cfg)
    guest = inv.model.params.guest
    if name is None or name[1] != guest:
        # The simulated host has room for dom0 and the lab's one guest only (balloon.py).
        need, have = inv.model.params.memory_mib * 1024, inv.model.free_memory_mib(inv.node.name)
        await inv.err(
            "Error: Not enough free memory and enable-dom0-ballooning is False, so I cannot "
            f"release any more.  I need {need} KiB but only have {have * 1024}.\n"
        )
        return EXIT_ERROR
    disk = _DISK_RE.search(cfg)
    if disk is not None and not inv.world.disk_present(inv.node, disk[1]):
        # DevController.waitForDevice with the block hotplug script's error; 51712 is xvda.
        await inv.err(
            f"Error: Device 51712 (vbd) could not be connected. {disk[1]} does not exist.\n"
        )
        return EXIT_ERROR
    try:
        domid = inv.model.boot(inv.node.name)
    except SimError:
        existing = _find(xm_rows(inv), guest)
        held = str(existing.domid) if existing is not None else "?"
        await inv.err(f"Error: Domain '{guest}' already exists with ID '{held}'\n")
        return EXIT_ERROR
    await inv.out(f"Started domain {guest} (id={domid})\n")  # xm/create.py
    return 0


async def _stop(inv: Invocation, command: str, args: list[str]) -> int:
    names = [a for a in args if not a.startswith("-")]
    row = _find(xm_rows(inv), names[0]) if names else None
    if row is None or row.domid == 0:
        return await _no_domain(inv, names[0] if names else "")
    if row.name.startswith(MIGRATING_PREFIX) or inv.model.migration is not None:
        if command == "destroy" and inv.model.abort_migration():
            return 0  # the incoming copy gone: the guest stays on the source
    if command == "destroy":
        inv.model.destroy(inv.model.guest.host or inv.node.name)
        return 0
    off_at = inv.model.shutdown(inv.node.name)
    if "-w" in args:
        await inv.runtime.until(off_at)
        # xm/shutdown.py wait_shutdown
        await inv.out(f"Domain {row.name} terminated\nAll domains terminated\n")
    return 0


async def xm_migrate(inv: Invocation, args: list[str]) -> int:
    """XendDomain.domain_migrate and XendCheckpoint.save over the model's pre-copy."""
    if len(args) != 2:
        await inv.err("Error: Invalid number of arguments\n")  # xm/migrate.py OptionError
        await inv.out(MIGRATE_USAGE)
        return EXIT_ERROR
    dom, host = args
    row = _find(xm_rows(inv), dom)
    if row is None:
        return await _no_domain(inv, dom)
    dest = inv.world.migration_peer(inv.node, host)
    if dest is None or dest.role != "hypervisor" or inv.model.migration is not None:
        # socket.error from connect() to xend-relocation-port, as Python 2.4/2.5 (the
        # xend of Xen 3.x) prints it: "(errno, 'message')".
        reason = (
            "(-2, 'Name or service not known')" if dest is None else ("(111, 'Connection refused')")
        )
        await inv.err(f"Error: can't connect: {reason}\n")
        await inv.out(MIGRATE_USAGE)
        return EXIT_ERROR
    disk = _DISK_RE.search(inv.node.read(inv.world.guest_config_path) or "")
    ready = disk is None or inv.world.disk_present(dest, disk[1])
    mig = inv.model.migrate(inv.node.name, dest.name, dest_ready=ready)
    done = 0
    try:
        while True:
            while done < len(mig.records):
                record = mig.records[done]
                await inv.runtime.until(record.t)
                done += 1
                if record.kind == "done":
                    return 0
                if record.kind in ("aborted", "resumed-at-source"):
                    # The Xen 3.2 capture's failure, with this domain's id.
                    failed = f"/usr/lib/xen/bin/xc_save 4 {row.domid} 0 0 1 failed"
                    await inv.err(f"Error: {failed}\n")
                    await inv.out(MIGRATE_USAGE)
                    return EXIT_ERROR
            await inv.runtime.until(inv.model.t + TICK)
    finally:
        inv.model.abort_migration()  # only takes effect if xm stopped before the suspend
