"""Parser for LIO's ``targetcli ls`` tree (targetcli-fb / configshell-fb, old targetcli).

Reads targetcli-fb 2.1.x (``tpg1``, ``[no-gen-acls, no-auth]``, ``[lun0 block/disk1 (rw)]``,
``[Storage Objects: N]``) and the older Datera/RisingTide targetcli 2.x that Ubuntu and
Debian shipped for years (``tpgt1`` until Datera commit 4dbf6d3, Oct 2013; TPG summary
``[enabled]``/``[disabled]``; mapped LUNs ``[lun0 (rw)]`` without the storage object;
``[5 Storage Objects]``; ``iblock`` backstores; portals ``[OK, iser disabled]``). A line
that is not a tree node, or that does not fit the tree, is skipped and counted
(:attr:`LioConfig.unparsed`); a value the summary does not state is ``None``.

LIO needs the kernel's target configfs, which this sandbox lacks, so the transcripts in
``tests/data/lio`` follow the layout of configshell's tree renderer and targetcli's
``summary()`` texts as seen in public logs (see that directory's README):

* One node a line: ``<prefix>o- <name> <dots> [<summary>]``. The prefix is two columns
  a level, ``| `` where the ancestor has a later sibling. The dots pad to the terminal
  width; when the line is too long they vanish, leaving two spaces before ``[``.
* Storage objects: ``[/dev/vg0/guest (10.0GiB) write-thru activated]`` (sizes from
  ``bytes_to_human``: binary units, one decimal).
* LUNs: ``[block/disk1 (/dev/vg0/guest) (default_tg_pt_gp)]``; older targetcli has no
  ALUA group. Mapped LUNs under an ACL: ``[lun0 block/disk1 (rw)]``.
* TPG flags: ``[no-gen-acls, no-auth]``, ``[gen-acls, ...]``, or ``[disabled]``.
* LIO numbers LUNs from 0: the guest disk is ``lun0`` (tgt's is LUN 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.drivers import ParseError

__all__ = [
    "LioAcl",
    "LioConfig",
    "LioLun",
    "LioMappedLun",
    "LioNode",
    "LioPortal",
    "LioStorageObject",
    "LioTarget",
    "LioTpg",
    "parse_targetcli_ls",
    "parse_tree",
]


# --- the generic tree --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LioNode:
    name: str
    summary: str
    children: tuple[LioNode, ...] = ()
    lineno: int = 0
    line: str = ""

    def child(self, name: str) -> LioNode | None:
        return next((c for c in self.children if c.name == name), None)


_NODE_RE = re.compile(r"^(?P<prefix>(?:[ |] )*)o- (?P<name>\S+)(?: \.+)? +\[(?P<summary>.*)\]$")


def parse_tree(text: str) -> LioNode:
    """Parse any ``targetcli ls [PATH]`` output into its node tree (root first).

    Lines that are not tree nodes (or do not fit the tree) are skipped; only output with
    no tree at all raises :class:`ParseError`.
    """
    return _parse_tree(text)[0]


def _parse_tree(text: str) -> tuple[LioNode, int]:
    # (depth, name, summary, lineno, raw, children) on a stack of open nodes.
    stack: list[tuple[int, str, str, int, str, list[LioNode]]] = []
    root: LioNode | None = None
    skipped = 0

    def close_to(depth: int) -> None:
        nonlocal root
        while stack and stack[-1][0] >= depth:
            _, name, summary, lineno, raw, kids = stack.pop()
            node = LioNode(name, summary, tuple(kids), lineno, raw)
            if stack:
                stack[-1][5].append(node)
            else:
                root = node

    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _NODE_RE.match(raw.rstrip())
        if not m or root is not None:  # not a node, or after the tree ended
            skipped += 1
            continue
        depth = len(m.group("prefix")) // 2
        if (not stack and depth != 0) or (stack and depth > stack[-1][0] + 1):
            skipped += 1  # deeper than its parent allows: where it belongs is unknown
            continue
        if stack and depth == 0:
            skipped += 1  # a second tree root
            continue
        close_to(depth)
        stack.append((depth, m.group("name"), m.group("summary"), lineno, raw, []))
    close_to(0)
    if root is None:
        raise ParseError("no targetcli tree in the output")
    return root, skipped


# --- the LIO model -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LioStorageObject:
    plugin: str
    """Backstore type: ``block``, ``fileio``, ``pscsi``, ``ramdisk``, ``user:...``."""
    name: str
    path: str | None
    size: str | None
    """As printed, e.g. ``10.0GiB``."""
    flags: tuple[str, ...] = ()
    """Remaining summary words: ``write-thru``/``write-back``, ``ro``, ``activated``..."""

    @property
    def activated(self) -> bool:
        return "activated" in self.flags

    @property
    def write_back(self) -> bool:
        return "write-back" in self.flags

    @property
    def size_bytes(self) -> int | None:
        """Approximate: ``bytes_to_human`` keeps one decimal."""
        return _human_to_bytes(self.size) if self.size else None


@dataclass(frozen=True, slots=True)
class LioLun:
    lun: int
    plugin: str
    storage_object: str
    path: str | None = None
    alua_group: str | None = None


@dataclass(frozen=True, slots=True)
class LioMappedLun:
    mapped_lun: int
    tpg_lun: int
    plugin: str | None
    """``None`` in old targetcli, which printed only ``lunN (rw)``."""
    storage_object: str | None
    write_protected: bool = False


@dataclass(frozen=True, slots=True)
class LioAcl:
    initiator: str
    auth: str | None
    """``1-way auth``, ``mutual auth``... when the summary names one."""
    mapped_luns: tuple[LioMappedLun, ...] = ()


@dataclass(frozen=True, slots=True)
class LioPortal:
    address: str
    port: int
    status: str
    """``OK``, or the transport when it is not plain TCP (``iser``)."""


@dataclass(frozen=True, slots=True)
class LioTpg:
    tag: int
    flags: tuple[str, ...]
    luns: tuple[LioLun, ...] = ()
    acls: tuple[LioAcl, ...] = ()
    portals: tuple[LioPortal, ...] = ()

    @property
    def enabled(self) -> bool:
        return "disabled" not in self.flags

    @property
    def generate_node_acls(self) -> bool | None:
        """Demo mode: any initiator may log in (no per-initiator ACLs needed).

        ``None`` when the summary does not say (old targetcli: ``enabled``/``disabled``).
        """
        if "gen-acls" in self.flags:
            return True
        return False if "no-gen-acls" in self.flags else None

    def initiators(self) -> tuple[str, ...]:
        return tuple(a.initiator for a in self.acls)


@dataclass(frozen=True, slots=True)
class LioTarget:
    wwn: str
    tpgs: tuple[LioTpg, ...] = ()


@dataclass(frozen=True, slots=True)
class LioConfig:
    storage_objects: tuple[LioStorageObject, ...] = ()
    targets: tuple[LioTarget, ...] = ()
    """iSCSI targets."""
    other_fabrics: tuple[tuple[str, str], ...] = ()
    """Other top-level nodes (``loopback``, ``vhost``...) with their summaries."""
    unparsed: int = 0
    """Lines not understood (not tree nodes, or nodes whose summary did not fit): skipped."""

    def target(self, wwn: str) -> LioTarget | None:
        return next((t for t in self.targets if t.wwn == wwn), None)

    def storage_object(self, plugin: str, name: str) -> LioStorageObject | None:
        return next(
            (s for s in self.storage_objects if s.plugin == plugin and s.name == name), None
        )


def parse_targetcli_ls(text: str) -> LioConfig:
    """Parse ``targetcli ls`` (whole tree) or ``targetcli ls /iscsi`` / ``/backstores``."""
    root, skipped = _parse_tree(text)
    bad = _Skipped(skipped)
    if root.name == "/":
        sections = root.children
    elif root.name in ("iscsi", "backstores"):
        sections = (root,)
    else:
        raise ParseError("expected the tree of '/', '/iscsi' or '/backstores'", root.line, 1)
    storage: list[LioStorageObject] = []
    targets: list[LioTarget] = []
    other: list[tuple[str, str]] = []
    for section in sections:
        if section.name == "backstores":
            for plugin in section.children:
                storage.extend(_storage_object(plugin.name, so) for so in plugin.children)
        elif section.name == "iscsi":
            targets.extend(_target(t, bad) for t in section.children)
        else:
            other.append((section.name, section.summary))
    return LioConfig(tuple(storage), tuple(targets), tuple(other), bad.count)


@dataclass(slots=True)
class _Skipped:
    count: int = 0


_SO_RE = re.compile(r"^(?:(?P<path>[^\s(]\S*) )?(?:\((?P<size>[^)]*)\))?\s*(?P<rest>.*)$")
_HUMAN_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?) ?(?P<unit>bytes|[KMGTP]iB)$")
_UNITS = {
    "bytes": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "PiB": 1 << 50,
}


def _human_to_bytes(size: str) -> int | None:
    m = _HUMAN_RE.match(size)
    if not m:
        return None
    return int(float(m.group("n")) * _UNITS[m.group("unit")])


def _storage_object(plugin: str, node: LioNode) -> LioStorageObject:
    m = _SO_RE.match(node.summary)
    if not m:  # cannot happen: every group is optional; kept for the type checker
        raise ParseError("bad storage object summary", node.line, node.lineno)
    size = m.group("size")
    if size is not None and _human_to_bytes(size) is None:
        size = None  # not a bytes_to_human size: unread, not guessed
    return LioStorageObject(
        plugin=plugin,
        name=node.name,
        path=m.group("path"),
        size=size,
        flags=tuple(m.group("rest").split()),
    )


_TPG_RE = re.compile(r"^tpgt?(\d+)$")  # "tpgtN" in targetcli before Oct 2013
_LUN_NAME_RE = re.compile(r"^lun(\d+)$")
_LUN_RE = re.compile(r"^(?P<plugin>[\w:]+)/(?P<so>[^\s(]+)(?P<parens>(?: \([^)]*\))*)$")
_MAPPED_NAME_RE = re.compile(r"^mapped_lun(\d+)$")
_MAPPED_RE = re.compile(
    r"^lun(?P<lun>\d+)\s+(?:(?P<plugin>[\w:]+)/(?P<so>\S+)\s+)?\((?P<mode>rw|ro)\)$"
)
_PORTAL_RE = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\s]+)):(?P<port>\d+)$")


def _target(node: LioNode, bad: _Skipped) -> LioTarget:
    tpgs = []
    for tpg in node.children:
        m = _TPG_RE.match(tpg.name)
        if not m:
            bad.count += 1
            continue
        tpgs.append(_tpg(int(m.group(1)), tpg, bad))
    return LioTarget(node.name, tuple(tpgs))


def _tpg(tag: int, node: LioNode, bad: _Skipped) -> LioTpg:
    flags = tuple(f.strip() for f in node.summary.split(",") if f.strip())
    luns: list[LioLun] = []
    acls: list[LioAcl] = []
    portals: list[LioPortal] = []
    for group in node.children:
        if group.name == "luns":
            luns.extend(lun for n in group.children if (lun := _lun(n, bad)) is not None)
        elif group.name == "acls":
            acls.extend(_acl(n, bad) for n in group.children)
        elif group.name == "portals":
            portals.extend(p for n in group.children if (p := _portal(n, bad)) is not None)
        # other groups (e.g. "attribute" views in newer targetcli) are not needed here
    return LioTpg(tag, flags, tuple(luns), tuple(acls), tuple(portals))


def _lun(node: LioNode, bad: _Skipped) -> LioLun | None:
    name = _LUN_NAME_RE.match(node.name)
    m = _LUN_RE.match(node.summary)
    if not name or not m:
        bad.count += 1  # e.g. "BROKEN STORAGE LINK"
        return None
    parens = re.findall(r"\(([^)]*)\)", m.group("parens"))
    path = next((p for p in parens if p.startswith("/")), None)
    alua = next((p for p in parens if not p.startswith("/")), None)
    return LioLun(int(name.group(1)), m.group("plugin"), m.group("so"), path, alua)


def _acl(node: LioNode, bad: _Skipped) -> LioAcl:
    parts = [p.strip() for p in node.summary.split(",")]
    auth = next((p for p in parts if p.endswith("auth")), None)
    mapped = []
    for child in node.children:
        name = _MAPPED_NAME_RE.match(child.name)
        m = _MAPPED_RE.match(child.summary)
        if not name or not m:
            bad.count += 1  # e.g. "BROKEN LUN LINK"
            continue
        mapped.append(
            LioMappedLun(
                int(name.group(1)),
                int(m.group("lun")),
                m.group("plugin"),
                m.group("so"),
                write_protected=m.group("mode") == "ro",
            )
        )
    return LioAcl(node.name, auth, tuple(mapped))


def _portal(node: LioNode, bad: _Skipped) -> LioPortal | None:
    m = _PORTAL_RE.match(node.name)
    if not m:
        bad.count += 1
        return None
    return LioPortal(m.group("v6") or m.group("v4"), int(m.group("port")), node.summary)
