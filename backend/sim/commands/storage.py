"""The storage tools on the simulated hosts: the fakes of ``backend/sim/tools``, wired together.

``ietadm``, ``targetcli`` and ``tgtadm`` (the storage node) and ``iscsiadm`` (the Xen hosts) are
pure functions over one host's state dict, written to the real tools' formats. What
one host does must be seen by the others, as a network would show it; after every
command :func:`sync` does that:

* every target the storage node exports is offered at the lab's portal to each Xen
  host's initiator (``iscsiadm.offer_target``);
* every initiator session opened or closed is mirrored on the target's side, so
  ``/proc/net/iet/session`` (or targetcli's sessions) lists the Xen hosts logged in.

A tool whose fake is missing is simply not installed on the simulated host (``command
not found``), exactly as on a machine without the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from backend.sim.commands.base import Invocation

if TYPE_CHECKING:
    from backend.sim.world import Node, World

ToolRun = Callable[[list[str], dict[str, Any]], tuple[int, str, str]]


def load_tool(name: str) -> ModuleType | None:
    """``backend.sim.tools.NAME`` if it exists (the fakes are written separately)."""
    try:
        return importlib.import_module(f"backend.sim.tools.{name}")
    except ImportError:
        return None


def tool_program(module: str) -> Callable[[Invocation], Any]:
    """A command that runs the pure fake ``module.run`` on this host's state."""

    async def program(inv: Invocation) -> int:
        tool = load_tool(module)
        if tool is None:  # pragma: no cover - the table only lists loadable tools
            await inv.err(f"bash: line 1: {inv.name}: command not found\n")
            return 127
        run: ToolRun = tool.run
        code, out, err = run([inv.name, *inv.argv[1:]], inv.node.state)
        if out:
            await inv.out(out)
        if err:
            await inv.err(err)
        return code % 256

    return program


# -- keeping the hosts in step ---------------------------------------------------------------


def sync(world: World, node: Node, argv: list[str]) -> None:
    """After a command: show exports to the initiators, mirror sessions on the target."""
    storage = next((n for n in world.nodes.values() if n.role == "storage"), None)
    if storage is None or world.portal is None:
        return
    targets = exported_targets(storage)
    initiators = [n for n in world.nodes.values() if n.role == "hypervisor"]
    iscsiadm = load_tool("iscsiadm")
    if iscsiadm is None:
        return
    for host in initiators:
        own = host.state.setdefault("iscsiadm", {})
        offered = own.setdefault("portals", {})
        offered.pop(world.portal, None)
        for iqn, luns, chap in targets:
            iscsiadm.offer_target(host.state, world.portal, iqn, luns, chap=chap)
    _mirror_sessions(world, storage, initiators)


def exported_targets(
    storage: Node,
) -> list[tuple[str, list[tuple[int, bool]], tuple[str, str] | None]]:
    """(iqn, [(lun, is_disk)], chap) of every target the storage node exports."""
    found: list[tuple[str, list[tuple[int, bool]], tuple[str, str] | None]] = []
    iet = storage.state.get("iet")
    if isinstance(iet, dict) and iet.get("running", True):
        for target in iet.get("targets", []):
            luns = [(int(lun["lun"]), True) for lun in target.get("luns", [])]
            users = [u for u in target.get("users") or [] if u.get("dir", "incoming") != "outgoing"]
            chap = (users[0]["user"], users[0]["password"]) if users else None
            found.append((target["name"], luns, chap))
    lio = storage.state.get("lio")
    if isinstance(lio, dict):
        for target in lio.get("targets", []):
            for tpg in target.get("tpgs", [])[:1]:
                if not tpg.get("enable", True):
                    continue
                luns = [(int(lun["lun"]), True) for lun in tpg.get("luns", [])]
                found.append((target["wwn"], luns, None))
    tgt = load_tool("tgtadm")
    if tgt is not None:
        for iqn, numbers, chap in tgt.exported(storage.state):
            found.append((iqn, [(n, True) for n in numbers], chap))
    return found


def _mirror_sessions(world: World, storage: Node, initiators: list[Node]) -> None:
    """Open (or close) on the target the sessions the initiators hold."""
    iet, lio, tgt = load_tool("ietadm"), load_tool("targetcli"), load_tool("tgtadm")
    mirrored: dict[tuple[str, int], tuple[str, int]] = world.sessions
    live: set[tuple[str, int]] = set()
    for host in initiators:
        own = host.state.get("iscsiadm", {})
        name = own.get("initiator_name", "")
        for session in own.get("sessions", []):
            key = (host.name, int(session["sid"]))
            live.add(key)
            if key in mirrored:
                continue
            try:
                if iet is not None and "iet" in storage.state:
                    sid = iet.login(storage.state, session["iqn"], name, host.address)
                    mirrored[key] = ("iet", sid)
                elif lio is not None and "lio" in storage.state:
                    sid = lio.login(storage.state, session["iqn"], name, host.address)
                    mirrored[key] = ("lio", sid)
                elif tgt is not None and "tgt" in storage.state:
                    sid = tgt.login(storage.state, session["iqn"], name, host.address)
                    mirrored[key] = ("tgt", sid)
            except (ValueError, PermissionError):
                continue  # the target went away under the session; iscsiadm shows it
    for key in [k for k in mirrored if k not in live]:
        kind, sid = mirrored.pop(key)
        if kind == "lio" and lio is not None:
            lio.logout(storage.state, sid)
        elif kind == "tgt" and tgt is not None:
            tgt.logout(storage.state, sid)
        elif kind == "iet":
            for target in storage.state.get("iet", {}).get("targets", []):
                target["sessions"] = [s for s in target.get("sessions", []) if s["sid"] != sid]


def is_block(node: Node, path: str) -> bool:
    """``test -b``: an attached iSCSI disk on a Xen host, a device of the storage node."""
    if node.role == "hypervisor":
        iscsiadm = load_tool("iscsiadm")
        return iscsiadm is not None and bool(iscsiadm.test_block(path, node.state))
    found = node.state.get("devices", {}).get(path)
    return isinstance(found, dict) and bool(found.get("block"))


def proc_file(node: Node, name: str) -> Callable[[], str]:
    """``/proc/net/iet/volume`` or ``session`` as the IET kernel module would show it."""

    def render() -> str:
        iet = load_tool("ietadm")
        if iet is None:
            return ""
        text: str = getattr(iet, f"render_proc_{name}")(node.state)
        return text

    return render
