"""The commands the simulated hosts answer, and which hosts have which.

:func:`command_table` lists them: a command a host does not have answers as bash does
on a real host, ``command not found`` with exit 127.
"""

from __future__ import annotations

from backend.sim.commands import dbench, ping, qemu, shell, storage, sysbench, system, xl, xm
from backend.sim.commands.base import Command, CommandTable, Program

ALL = frozenset({"storage", "hypervisor", "guest"})
HOSTS = frozenset({"storage", "hypervisor"})
STORAGE = frozenset({"storage"})
HYPERVISOR = frozenset({"hypervisor"})
GUEST = frozenset({"guest"})

# The fakes of backend/sim/tools, by the command they play and where it is installed.
STORAGE_TOOLS = {
    "ietadm": ("ietadm", STORAGE, "/usr/sbin/ietadm"),
    "targetcli": ("targetcli", STORAGE, "/usr/bin/targetcli"),
    "tgtadm": ("tgtadm", STORAGE, "/usr/sbin/tgtadm"),
    "iscsiadm": ("iscsiadm", HYPERVISOR, "/usr/bin/iscsiadm"),
    "iscsi-ls": ("iscsi_ls", HYPERVISOR, "/usr/bin/iscsi-ls"),
}


def command_table(
    storage_driver: str = "iet", hypervisor: str = "xen", qemu_binary: str = qemu.BINARY
) -> CommandTable:
    """Every command, for a lab whose target software is ``storage_driver`` and whose
    hypervisor hosts run ``hypervisor``: Xen's toolstacks and open-iscsi, or QEMU
    (``qemu_binary``, lab.toml's ``[guest.qemu] binary``), its own iSCSI initiator."""

    def c(program: Program, roles: frozenset[str], where: str) -> Command:
        return Command(program, roles, where)

    table: CommandTable = {
        "true": c(system.true, ALL, "/bin/true"),
        "false": c(system.false, ALL, "/bin/false"),
        "uname": c(system.uname, ALL, "/bin/uname"),
        "hostname": c(system.hostname, ALL, "/bin/hostname"),
        "echo": c(system.echo, ALL, "/bin/echo"),
        "sleep": c(system.sleep, ALL, "/bin/sleep"),
        "date": c(system.date, ALL, "/bin/date"),
        "cat": c(system.cat, ALL, "/bin/cat"),
        "mkdir": c(system.mkdir, ALL, "/bin/mkdir"),
        "rm": c(system.rm, ALL, "/bin/rm"),
        "test": c(system.test, ALL, "/usr/bin/test"),
        "[": c(system.test, ALL, "/usr/bin/["),
        "which": c(system.which, ALL, "/usr/bin/which"),
        "mktemp": c(system.mktemp, ALL, "/bin/mktemp"),
        "grep": c(system.grep, ALL, "/bin/grep"),
        "sh": c(shell.sh, ALL, "/bin/sh"),
        "dash": c(shell.sh, ALL, "/bin/dash"),
        "bash": c(shell.sh, ALL, "/bin/bash"),
        "busybox": c(shell.sh, GUEST, "/bin/busybox"),
        "ping": c(ping.ping, ALL, "/bin/ping"),
        "kill": c(qemu.kill, HOSTS, "/bin/kill"),
        "sysbench": c(sysbench.sysbench, GUEST, "/usr/bin/sysbench"),
        "dbench": c(dbench.dbench, GUEST, "/usr/bin/dbench"),
    }
    if hypervisor == "qemu":
        name = qemu_binary.rsplit("/", 1)[-1]
        where = qemu_binary if "/" in qemu_binary else f"/usr/bin/{qemu_binary}"
        table[name] = c(qemu.qemu, HYPERVISOR, where)
    else:
        table["xl"] = c(xl.xl, HYPERVISOR, "/usr/sbin/xl")
        table["xm"] = c(xm.xm, HYPERVISOR, "/usr/sbin/xm")
    wanted = {"iet": "ietadm", "lio": "targetcli", "tgt": "tgtadm"}.get(storage_driver)
    for name, (module, roles, where) in STORAGE_TOOLS.items():
        if roles == STORAGE and name != wanted:
            continue  # the storage node runs one target, the one lab.toml names
        if name == "iscsiadm" and hypervisor == "qemu":
            continue  # QEMU is its own initiator
        if storage.load_tool(module) is not None:
            table[name] = c(storage.tool_program(module), roles, where)
    return table
