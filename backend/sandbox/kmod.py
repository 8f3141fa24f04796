"""Kernel modules of an unpacked kernel package, without kmod.

A kernel unpacked with ``dpkg -x`` has no ``modules.dep`` (``depmod`` runs at
install time), and the host may not have kmod at all. So the dependencies are
read straight from each module's ``.modinfo`` ELF section (``depends=a,b``),
which is exactly what depmod reads. Everything here is synchronous file work:
call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


class ModuleError(RuntimeError):
    """A module file that cannot be read or understood."""


def module_name(path: Path | str) -> str:
    """``.../virtio-rng.ko.xz`` -> ``virtio_rng`` (the kernel treats - and _ alike)."""
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def read_module(path: Path) -> bytes:
    """The module's ELF bytes, decompressed: busybox insmod only takes plain .ko files."""
    raw = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".ko.zst"):
        # No zstd in the standard library; Debian 12 kernels ship plain .ko anyway.
        raise ModuleError(f"{path}: zstd-compressed modules are not supported")
    return raw


def modinfo(elf: bytes) -> dict[str, list[str]]:
    """The ``key=value`` strings of a module's ``.modinfo`` section (a key may repeat)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ModuleError("not a little-endian ELF64 file")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        (name_off,) = struct.unpack_from("<I", elf, base)
        offset, size = struct.unpack_from("<QQ", elf, base + 24)
        return name_off, offset, size

    _, names_off, names_size = section(shstrndx)
    names = elf[names_off : names_off + names_size]
    for index in range(shnum):
        name_off, offset, size = section(index)
        end = names.find(b"\0", name_off)
        if names[name_off:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in elf[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ModuleError("no .modinfo section")


def module_depends(elf: bytes) -> list[str]:
    values = modinfo(elf).get("depends", [""])
    return [module_name(dep) for value in values for dep in value.split(",") if dep]


@dataclass
class ModuleTree:
    """The modules of one kernel: ``lib/modules/<version>`` of an unpacked package."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)

    @classmethod
    def scan(cls, root: Path) -> ModuleTree:
        tree = cls(root)
        for path in sorted((root / "kernel").rglob("*.ko*")):
            if path.name.endswith(_SUFFIXES):
                tree.files[module_name(path)] = path
        builtin = root / "modules.builtin"
        if builtin.exists():
            tree.builtin = {
                module_name(line) for line in builtin.read_text().split() if line.strip()
            }
        return tree


@dataclass
class LoadPlan:
    """Modules to insmod, dependencies first; the rest were built in or absent."""

    load: list[tuple[str, Path]] = field(default_factory=list)
    builtin: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def plan_load_order(tree: ModuleTree, wanted: Sequence[str] | Iterable[str]) -> LoadPlan:
    """Depth-first over ``depends=``: each module after its dependencies, else in asked order."""
    plan = LoadPlan()
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = module_name(name)
        if name in seen:
            return
        if name in chain:
            raise ModuleError(f"dependency cycle: {' -> '.join((*chain, name))}")
        if name in tree.builtin:
            seen.add(name)
            plan.builtin.append(name)
            return
        path = tree.files.get(name)
        if path is None:
            seen.add(name)
            plan.missing.append(name)
            return
        for dep in module_depends(read_module(path)):
            visit(dep, (*chain, name))
        seen.add(name)
        plan.load.append((name, path))

    for name in wanted:
        visit(name, ())
    return plan
