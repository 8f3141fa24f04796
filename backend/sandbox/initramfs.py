"""An initramfs built in memory and written as a gzip'd newc cpio archive.

The archive is written by Python rather than by ``cpio`` so that it can hold
``/dev/console`` (a device node: ``cpio`` would need root and ``mknod``) and so
that it is reproducible: every entry has mtime 0, uid/gid 0 and a sorted place.

Binaries come with their shared libraries (:meth:`Initramfs.add_binary`, which
asks ``ldd``), so the sandbox can drop dropbear, sysbench or dbench in later.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class InitramfsError(RuntimeError):
    """A file that cannot go into the image (a missing library, a bad path)."""


@dataclass(frozen=True)
class _Entry:
    mode: int  # st_mode, type bits included
    data: bytes = b""  # file contents, or a symlink's target
    source: Path | None = None  # file contents read at write time (big files)
    rdev: tuple[int, int] = (0, 0)


def _norm(path: str) -> str:
    """Image paths are absolute POSIX paths; the archive stores them without the slash."""
    pure = PurePosixPath("/") / path
    if ".." in pure.parts:
        raise InitramfsError(f"path escapes the image: {path}")
    return str(pure).lstrip("/")


_LDD_LIB = re.compile(r"^\s*\S+\s+=>\s+(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_LDD_INTERP = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_LDD_MISSING = re.compile(r"^\s*(\S+)\s+=>\s+not found")


async def shared_libraries(binary: Path, library_path: Sequence[Path] = ()) -> list[Path]:
    """The libraries ``ldd`` resolves for ``binary`` (its loader included); [] if static.

    ``library_path`` directories are searched first (``LD_LIBRARY_PATH``): libraries of a
    package that is unpacked but not installed on this machine."""
    env = {**os.environ, "LC_ALL": "C"}
    if library_path:
        env["LD_LIBRARY_PATH"] = ":".join(str(d) for d in library_path)
    else:
        env.pop("LD_LIBRARY_PATH", None)
    proc = await asyncio.create_subprocess_exec(
        "ldd",
        str(binary),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out_b, err_b = await proc.communicate()
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    if "not a dynamic executable" in out + err or "statically linked" in out:
        return []
    if proc.returncode != 0:
        raise InitramfsError(f"ldd {binary} failed ({proc.returncode}): {err.strip()}")
    libs: list[Path] = []
    for line in out.splitlines():
        if missing := _LDD_MISSING.match(line):
            raise InitramfsError(f"{binary} needs {missing.group(1)}, which ldd cannot find")
        if match := _LDD_LIB.match(line) or _LDD_INTERP.match(line):
            libs.append(Path(match.group(1)))
    return libs


def library_dirs(roots: Sequence[Path]) -> list[Path]:
    """The library directories of unpacked packages (multiarch ones first), that exist."""
    found: list[Path] = []
    for root in roots:
        for pattern in ("lib/*-linux-gnu", "usr/lib/*-linux-gnu", "lib", "usr/lib"):
            found += sorted(d for d in root.glob(pattern) if d.is_dir())
    return found


def _path_in_roots(lib: Path, roots: Sequence[Path]) -> str | None:
    for root in roots:
        if lib.is_relative_to(root):
            return "/" + lib.relative_to(root).as_posix()
    return None


class Initramfs:
    """A tree of files, directories, symlinks and device nodes to boot from."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self._entries

    def paths(self) -> list[str]:
        return sorted("/" + name for name in self._entries)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._entries[_norm(path)] = _Entry(stat.S_IFDIR | mode)

    def add_file(
        self,
        path: str,
        *,
        data: bytes | str | None = None,
        source: Path | None = None,
        mode: int = 0o644,
    ) -> None:
        """A regular file from ``data`` or from the host file ``source`` (read when written)."""
        if (data is None) == (source is None):
            raise ValueError("give exactly one of data and source")
        payload = data.encode() if isinstance(data, str) else (data or b"")
        self._entries[_norm(path)] = _Entry(stat.S_IFREG | mode, payload, source)

    def add_symlink(self, path: str, target: str) -> None:
        self._entries[_norm(path)] = _Entry(stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entries[_norm(path)] = _Entry(stat.S_IFCHR | mode, rdev=(major, minor))

    async def add_binary(
        self, binary: Path, dest: str | None = None, *, roots: Sequence[Path] = ()
    ) -> list[str]:
        """Add an executable (at ``dest``, default ``/usr/bin/<name>``) and every library
        ``ldd`` lists for it, each at the path ``ldd`` printed, so the guest's dynamic loader
        finds them without an ``ld.so.cache``. ``roots`` are unpacked packages (``dpkg -x``)
        whose library directories ``ldd`` searches first; a library found in one goes to its
        path inside the package (``/usr/lib/x86_64-linux-gnu/...``), not to where it was
        unpacked. Returns the image paths added."""
        if not await asyncio.to_thread(binary.is_file):
            raise InitramfsError(f"no such binary: {binary}")
        target = dest or f"/usr/bin/{binary.name}"
        self.add_file(target, source=binary, mode=0o755)
        added = [target]
        search = await asyncio.to_thread(library_dirs, roots)
        for lib in await shared_libraries(binary, search):
            image_path = _path_in_roots(lib, roots) or str(lib)
            # Copy the file a symlink points to, under the name the loader asks for.
            self.add_file(image_path, source=await asyncio.to_thread(lib.resolve), mode=0o755)
            added.append(image_path)
        return added

    def _with_parents(self) -> Iterator[tuple[str, _Entry]]:
        """Every entry after its parent directories: the kernel does not create them."""
        names = set(self._entries)
        for name in list(names):
            parent = PurePosixPath(name).parent
            while str(parent) not in (".", "/") and str(parent) not in names:
                names.add(str(parent))
                parent = parent.parent
        for name in sorted(names, key=lambda n: PurePosixPath(n).parts):
            yield name, self._entries.get(name, _Entry(stat.S_IFDIR | 0o755))

    def write(self, out: Path, *, compresslevel: int = 6) -> None:
        """Write the gzip'd newc archive (blocking: call through ``asyncio.to_thread``)."""
        tmp = out.with_name(out.name + ".part")
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) as gz,
        ):
            for ino, (name, entry) in enumerate(self._with_parents(), start=1):
                body = entry.source.read_bytes() if entry.source is not None else entry.data
                _write_member(gz, ino, name, entry, body)
            _write_member(gz, 0, "TRAILER!!!", _Entry(0), b"")
        tmp.replace(out)


def _write_member(gz: gzip.GzipFile, ino: int, name: str, entry: _Entry, body: bytes) -> None:
    name_b = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        nlink,
        0,  # mtime: fixed, so the same inputs give the same bytes
        len(body),
        0,  # devmajor
        0,  # devminor
        entry.rdev[0],
        entry.rdev[1],
        len(name_b),
        0,  # check (unused by newc)
    )
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    gz.write(header + name_b)
    gz.write(b"\0" * (-(len(header) + len(name_b)) % 4))
    gz.write(body)
    gz.write(b"\0" * (-len(body) % 4))
