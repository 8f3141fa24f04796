"""``sh -c SCRIPT NAME ARGS...``: miglab's own fixed scripts, and only those.

The simulated hosts are not POSIX shells. miglab never pastes values into a shell
string: where it needs a shell it runs a fixed script with the values as positional
parameters, and names the script in ``$0`` (``miglab-check``, ``miglab-dirtier``,
``miglab-build``, ``miglab-kill``, the storage drivers' and the experiment runner's).
The simulator recognises a script by that name and does what it does; any other
``sh`` use is refused with exit 126 and a message saying why. More scripts can be
added to :data:`SCRIPTS` (e.g. by a driver's tests).
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Awaitable, Callable

from backend.sim import workloads as wl
from backend.sim.commands import qemu
from backend.sim.commands.base import Invocation

Script = Callable[[Invocation, list[str]], Awaitable[int]]
EXIT_CANNOT_RUN = 126


_META = set(";&|<>()$`\\\"'*?[]{}~#=\n")
"""Characters that make a script more than one plain command."""


async def sh(inv: Invocation) -> int:
    args = inv.argv[1:]
    if inv.name == "busybox":
        if not args:
            await inv.out(
                "BusyBox multi-call binary.\n\nUsage: busybox [function [arguments]...]\n"
            )
            return 0
        if args[0] not in ("sh", "ash"):
            await inv.err(f"{args[0]}: applet not found\n")  # the guest's busybox has sh only
            return 127
        args = args[1:]
    if not args:
        return 0  # it reads commands from standard input, which is empty here
    if args[0] != "-c":
        path = args[0]
        if inv.node.read(path) is None:
            await inv.err(f"{inv.name}: 0: cannot open {path}: No such file\n")  # dash
            return 2
        return await _cannot_run(inv)
    if len(args) < 2:
        await inv.err(f"{inv.name}: 0: -c requires an argument\n")  # dash
        return 2
    script, name = args[1], args[2] if len(args) > 2 else inv.name
    known = SCRIPTS.get(name)
    if known is not None:
        return await known(inv, args[3:])
    if script.strip() and not (_META & set(script)):
        # One plain command: the shell runs it as the host would.
        return await inv.world.execute(inv.node, script.split(), inv.output)
    return await _cannot_run(inv)


async def _cannot_run(inv: Invocation) -> int:
    """A script of the user's own. No real shell refuses one, and no line of a real tool
    fits; so this one says plainly that the simulator, not the shell, cannot run it."""
    known = ", ".join(sorted(SCRIPTS))
    await inv.err(
        f"miglab sim: the simulated {inv.node.name} runs plain commands and miglab's own "
        f"scripts ({known}, named by $0), not this script\n"
    )
    return EXIT_CANNOT_RUN


# -- miglab-check: which lab tools a host has --------------------------------------------


async def check_tools(inv: Invocation, tools: list[str]) -> int:
    for tool in tools:
        found = inv.world.which(inv.node, tool)
        await inv.out(f"{tool} {found or '-'}\n")
    return 0


async def kill(inv: Invocation, args: list[str]) -> int:
    return 0  # plain exec: cancelling closes the channel, which already stops the program


# -- the storage drivers' scripts (backend/drivers/remote.py, target_iet.py) -------------------


async def device_kind(inv: Invocation, args: list[str]) -> int:
    """miglab-kind PATH: ``block``, ``file`` or ``missing``."""
    path = args[0] if args else ""
    if inv.world.is_block(inv.node, path):
        kind = "block"
    elif inv.node.is_file(path):
        kind = "file"
    else:
        kind = "missing"
    await inv.out(kind + "\n")
    return 0


_USER_LINE = re.compile(r"^[ \t]*(Incoming|Outgoing)User[ \t]", re.IGNORECASE | re.MULTILINE)


async def count_users(inv: Invocation, args: list[str]) -> int:
    """miglab-iet CONF: ``missing``, or how many Incoming/OutgoingUser lines it has."""
    text = inv.node.read(args[0]) if args else None
    await inv.out("missing\n" if text is None else f"{len(_USER_LINE.findall(text))}\n")
    return 0


async def write_file(inv: Invocation, args: list[str]) -> int:
    """miglab-write PATH TEXT: replace the file (via PATH.miglab-new, as the script does)."""
    path, text = [*args, "", ""][:2]
    return await _replace(inv, path, text)


async def install_file(inv: Invocation, args: list[str]) -> int:
    """miglab-install STAGED PATH: copy a staged file over PATH."""
    staged, path = [*args, "", ""][:2]
    text = inv.node.read(staged)
    if text is None:
        await inv.err(f"miglab-install: 1: cannot open {staged}: No such file\n")
        return 2
    return await _replace(inv, path, text)


async def _replace(inv: Invocation, path: str, text: str) -> int:
    if not path.startswith("/") or not inv.node.is_dir(posixpath.dirname(path)):
        await inv.err(f"sh: 1: cannot create {path}.miglab-new: Directory nonexistent\n")
        return 2
    inv.node.write(path, text)
    return 0


# -- miglab-dirtier: the RAM dirtier (backend/probes/dirtier.py) ---------------------------


async def dirtier(inv: Invocation, args: list[str]) -> int:
    size, rounds, path = [*args, "", "", ""][:3]
    if not size.isdigit() or int(size) == 0:
        await inv.err(f"miglab-dirtier: bad size_mib: {size}\n")
        return 2
    if not rounds.isdigit():
        await inv.err(f"miglab-dirtier: bad rounds: {rounds}\n")
        return 2
    if not path.startswith("/"):
        await inv.err(f"miglab-dirtier: path must be absolute: {path}\n")
        return 2
    if not inv.node.is_dir(posixpath.dirname(path) or "/"):
        await inv.err(f"miglab-dirtier: no directory for {path}\n")
        return 2
    mib, limit = int(size), int(rounds)
    await inv.out(f"miglab-dirtier start size_mib={mib} rounds={limit}\n")
    model = inv.model
    room = _room_mib(inv, path)
    if mib > room:  # the fill, doubling the file, runs out of room
        written = room
        await inv.out(
            "miglab-dirtier error fill\n"
            f"dd: error writing '{path}': No space left on device\n"
            f"{written + 1}+0 records in\n{written}+0 records out\n"
            f"{written << 20} bytes ({(written << 20) / 1e6:.0f} MB, {written} MiB) copied\n"
        )
        return 1
    w = await inv.start(wl.Dirtier, size_mib=mib)
    inv.node.write(path, "")
    try:
        # The fill (random data, doubled up to the size) writes the file once: the
        # workload's first pass. Each round after it is one more.
        began = model.t
        filled = await _pass(inv, w, 0)
        await inv.out(f"miglab-dirtier filled mib={mib} cs={_cs(inv, began, filled)}\n")
        done, began = 0, filled
        while limit == 0 or done < limit:
            ended = await _pass(inv, w, done + 1)
            done += 1
            cs, up = _cs(inv, began, ended), _uptime(inv, ended)
            await inv.out(f"miglab-dirtier round={done} mib={mib} cs={cs} uptime={up:.2f}\n")
            began = ended
        await inv.out(f"miglab-dirtier done rounds={done}\n")
        return 0
    finally:
        model.stop(w)
        inv.node.remove(path)


async def _pass(inv: Invocation, w: wl.Workload, index: int) -> float:
    """When the dirtier's pass ``index`` (0: the fill) ended, once it has."""
    while len(w.marks) <= index:
        await inv.runtime.until(inv.model.t + 0.1)
    return w.marks[index][0]


def _cs(inv: Invocation, start: float, end: float) -> int:
    """Centiseconds from ``start`` to ``end`` as /proc/uptime shows them."""
    return math.floor(_uptime(inv, end) * 100) - math.floor(_uptime(inv, start) * 100)


def _uptime(inv: Invocation, t: float) -> float:
    return t - inv.model.guest.booted_at


def _room_mib(inv: Invocation, path: str) -> int:
    """Free MiB where ``path`` is: tmpfs gets half the RAM; the rest is the disk."""
    if path.startswith("/dev/shm/"):
        busy = sum(w.size_mib for w in inv.model.workloads.values() if isinstance(w, wl.Dirtier))
        return int(inv.model.params.memory_mib * wl.TMPFS_SHARE) - busy
    return 1 << 20


# -- miglab-build: a kernel compile (backend/probes/build.py) ------------------------------


def kernel_objects() -> list[str]:
    """The objects of the simulated kernel tree, in build order (deterministic)."""
    dirs = (
        "init", "kernel", "kernel/time", "kernel/sched", "mm", "fs", "fs/ext3", "fs/proc",
        "ipc", "security", "crypto", "block", "lib", "arch/x86/kernel", "arch/x86/mm",
        "drivers/base", "drivers/block", "drivers/char", "drivers/net", "drivers/scsi",
        "drivers/xen", "net/core", "net/ipv4", "net/ipv6", "net/sched", "sound/core",
    )  # fmt: skip
    stems = (
        "main", "core", "sys", "fork", "exit", "signal", "timer", "irq", "page", "file",
        "inode", "namei", "super", "buffer", "dev", "bus", "driver", "init", "util", "ops",
        "cache", "queue", "map", "proc", "sysctl", "config", "table", "event", "hash", "list",
    )  # fmt: skip
    return [f"{d}/{s}.o" for d in dirs for s in stems]


KERNEL_OBJECTS = kernel_objects()


async def build(inv: Invocation, args: list[str], *, repeat: bool = False) -> int:
    """miglab-build DIR ARGV...: ``make -jN`` in DIR, a kernel tree (kbuild's quiet lines);
    miglab-rebuild: the same tree built over and over, each build between round markers
    stamped with the model's clock as the guest's uptime."""
    directory, command = (args[0] if args else ""), args[1:]
    if directory and not inv.node.is_dir(directory):
        await inv.out(f"sh: 5: cd: can't cd to {directory}\n")  # stderr joins stdout
        return 2
    await inv.out("miglab-build start\n")
    if not command:
        await inv.out("miglab-build exit=0\n")
        return 0
    if command[0] != "make":
        await inv.out(f"sh: 8: {command[0]}: not found\nmiglab-build exit=127\n")
        return 127
    jobs = 1
    for arg in command[1:]:
        if arg.startswith("-j") and arg[2:].isdigit():
            jobs = int(arg[2:])
    lines = [f"  CC      {name}" for name in KERNEL_OBJECTS]
    w = await inv.start(wl.Build, jobs=jobs)
    try:
        done, n = 0, 0
        while True:
            n += 1
            if repeat:
                await inv.out(f"miglab-build round={n} start uptime={inv.model.t:.2f}\n")
            end = done + len(lines)
            while done < end:
                while len(w.marks) <= done:
                    await inv.runtime.until(inv.model.t + 0.1)
                fresh = min(len(w.marks), end)
                for k in range(done, fresh):
                    await inv.out(lines[k % len(lines)] + "\n")
                done = fresh
            await inv.out("  LD      vmlinux.o\n  LD      vmlinux\n")
            if not repeat:
                break
            await inv.out(f"miglab-build round={n} exit=0 uptime={inv.model.t:.2f}\n")
        await inv.out("miglab-build exit=0\n")
        return 0
    finally:
        inv.model.stop(w)


async def rebuild(inv: Invocation, args: list[str]) -> int:
    """miglab-rebuild DIR ARGV...: see :func:`build`."""
    return await build(inv, args, repeat=True)


# -- the experiment runner's scripts (backend/experiments/runner.py) -----------------------


async def scratch(inv: Invocation, args: list[str]) -> int:
    """miglab-scratch WHAT: a new directory ``~/miglab-WHAT.XXXXXX``, printed."""
    what = args[0] if args else ""
    inv.world.temp_counter += 1
    path = f"/root/miglab-{what}.{inv.world.temp_counter:06d}"
    inv.node.mkdir(path, parents=True)
    await inv.out(path + "\n")
    return 0


async def is_dir(inv: Invocation, args: list[str]) -> int:
    """miglab-isdir PATH: ``yes`` or ``no``, exit 0 either way."""
    path = args[0] if args else ""
    await inv.out("yes\n" if path and inv.node.is_dir(path) else "no\n")
    return 0


SCRIPTS: dict[str, Script] = {
    "miglab-check": check_tools,
    "miglab-dirtier": dirtier,
    "miglab-build": build,
    "miglab-rebuild": rebuild,
    "miglab-kill": kill,
    "miglab-kind": device_kind,
    "miglab-iet": count_users,
    "miglab-write": write_file,
    "miglab-install": install_file,
    "miglab-scratch": scratch,
    "miglab-isdir": is_dir,
    "miglab-qemu-pid": qemu.pid_script,
}
