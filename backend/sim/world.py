"""The simulated lab's machines: names, addresses, files, and running a command on one.

A :class:`Node` is one machine (the storage node, a Xen host, or the guest) with a
small file system (directories and files, some computed on read, like
``/proc/uptime``) and the state the fake storage tools keep for it
(``backend/sim/tools``). A :class:`World` holds the nodes, the model and the clock, and
runs a command line on a node the way its login shell would: the program if the node
has it, else bash's ``command not found`` and exit 127.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from backend.sim.clock import Runtime
from backend.sim.commands.base import (
    CommandTable,
    GuestGone,
    Invocation,
    Output,
)
from backend.sim.model import Model

Role = Literal["storage", "hypervisor", "guest"]
FileContent = str | Callable[[], str]

BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
EXIT_NOT_FOUND = 127
EXIT_CONNECTION_LOST = 255


@dataclass
class Node:
    """One simulated machine."""

    name: str
    role: Role
    address: str
    kernel: str
    aliases: frozenset[str] = frozenset()
    dirs: set[str] = field(default_factory=set)
    files: dict[str, FileContent] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    """The fake tools' state for this host (``state["iet"]``, ``state["iscsiadm"]``...)."""

    def __post_init__(self) -> None:
        self.dirs.add("/")

    def is_dir(self, path: str) -> bool:
        return _norm(path) in self.dirs

    def is_file(self, path: str) -> bool:
        return _norm(path) in self.files

    def exists(self, path: str) -> bool:
        return self.is_dir(path) or self.is_file(path)

    def read(self, path: str) -> str | None:
        content = self.files.get(_norm(path))
        if content is None:
            return None
        return content() if callable(content) else content

    def write(self, path: str, text: str) -> None:
        self.files[_norm(path)] = text

    def mkdir(self, path: str, parents: bool = False) -> str | None:
        """Create a directory; returns the error a real mkdir would print, or None."""
        path = _norm(path)
        parent = posixpath.dirname(path)
        if path in self.dirs:
            return None if parents else "File exists"
        if path in self.files:
            return "File exists"
        if parent not in self.dirs:
            if not parents:
                return "No such file or directory"
            error = self.mkdir(parent, parents=True)
            if error is not None:
                return error
        self.dirs.add(path)
        return None

    def remove(self, path: str, recursive: bool = False) -> str | None:
        path = _norm(path)
        if path in self.files:
            del self.files[path]
            return None
        if path in self.dirs:
            if not recursive:
                return "Is a directory"
            if path == "/":
                return "Device or resource busy"
            self.dirs = {d for d in self.dirs if d != path and not d.startswith(path + "/")}
            self.files = {f: c for f, c in self.files.items() if not f.startswith(path + "/")}
            return None
        return "No such file or directory"

    def add_files(self, files: dict[str, FileContent]) -> None:
        for path, content in files.items():
            self.mkdir(posixpath.dirname(_norm(path)), parents=True)
            self.files[_norm(path)] = content

    def add_dirs(self, dirs: Iterable[str]) -> None:
        for path in dirs:
            self.mkdir(path, parents=True)


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "ip6-localhost"})


def _no_block_devices(node: Node, path: str) -> bool:
    return False


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/")) if path else "/"


class World:
    """The nodes, the model and the clock: where simulated commands run."""

    def __init__(
        self,
        model: Model,
        runtime: Runtime,
        nodes: Iterable[Node],
        commands: CommandTable,
    ) -> None:
        self.model = model
        self.runtime = runtime
        self.nodes = {n.name: n for n in nodes}
        self.commands = commands
        self.after_command: list[Callable[[World, Node, list[str]], None]] = []
        """Hooks run after every command (e.g. to show a new iSCSI export to the initiators)."""
        self.block_devices: Callable[[Node, str], bool] = _no_block_devices
        """``test -b``: which paths are block devices on a node (the storage fakes know)."""
        self.portal: str | None = None
        """Where the storage node's target listens, as the initiators name it."""
        self.guest_config_path = "/etc/xen/guest.cfg"
        self.temp_counter = 0
        self.sessions: dict[tuple[str, int], tuple[str, int]] = {}
        """Initiator sessions (host, sid) mirrored on the target side (kind, target sid)."""

    def node(self, name: str) -> Node:
        return self.nodes[name]

    @property
    def guest(self) -> Node:
        return next(n for n in self.nodes.values() if n.role == "guest")

    def resolve(self, name: str, here: Node | None = None) -> Node | None:
        """The node an address or host name means, seen from ``here``.

        The guest's address first (in the simulated lab the hosts share 127.0.0.1, the
        SSH address; the guest may have it too when 127.0.0.2 is not available), then
        the loopback names (``here`` itself), then names, addresses and aliases.
        """
        guest = self.guest
        if name in (guest.address, guest.name) or name in guest.aliases:
            return guest
        if here is not None and name in LOOPBACK:
            return here
        for node in self.nodes.values():
            if name == node.name or name == node.address or name in node.aliases:
                return node
        lowered = name.lower()
        for node in self.nodes.values():
            if lowered == node.name.lower():
                return node
        return None

    def migration_peer(self, source: Node, name: str) -> Node | None:
        """The host ``xl migrate`` on ``source`` reaches as ``name``.

        All simulated hosts answer SSH on 127.0.0.1; migrating to a loopback name (or
        to the host itself) means the other hypervisor, the only sensible target.
        """
        found = self.resolve(name, source)
        if found is source or (found is not None and found.role == "guest"):
            others = [n for n in self.nodes.values() if n.role == "hypervisor" and n is not source]
            return others[0] if others else None
        return found

    def is_block(self, node: Node, path: str) -> bool:
        return self.block_devices(node, path)

    def disk_present(self, node: Node, path: str) -> bool:
        """Whether a guest disk path exists on ``node`` (its iSCSI session is up)."""
        if self.block_devices is _no_block_devices:
            return True  # no storage fakes installed: the lab comes with its disk attached
        return self.is_block(node, path)

    def which(self, node: Node, name: str) -> str | None:
        """Where ``name`` is on ``node`` (``command -v``), or None."""
        command = self.commands.get(name)
        if command is None or node.role not in command.roles:
            return None
        return command.path

    async def execute(self, node: Node, argv: list[str], output: Output) -> int:
        """Run ``argv`` on ``node``; returns its exit code (255: the guest went away)."""
        if not argv:
            return 0
        program = argv[0]
        name = program.rsplit("/", 1)[-1]
        command = self.commands.get(name)
        known = command is not None and node.role in command.roles
        # A path runs the program when it is in a bin directory or is where the lab put it
        # (lab.toml's [guest.qemu] binary: the sandbox's QEMU 10 launcher is in its cache).
        in_place = known and command is not None and program == command.path
        if (
            "/" in program
            and not in_place
            and (not known or posixpath.dirname(program) not in BIN_DIRS)
        ):
            await output.write("stderr", f"bash: line 1: {program}: No such file or directory\n")
            return EXIT_NOT_FOUND
        if not known or command is None:
            await output.write("stderr", f"bash: line 1: {program}: command not found\n")
            return EXIT_NOT_FOUND
        try:
            return await command.program(Invocation(self, node, list(argv), output))
        except GuestGone:
            return EXIT_CONNECTION_LOST
        finally:
            for hook in self.after_command:
                hook(self, node, list(argv))
