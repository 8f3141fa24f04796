"""A real compiler and a real C project for the sandbox guest (the study's test 6).

The study compiled a Linux kernel in the guest while it migrated. The sandbox guest
lives in an initramfs in RAM (256 MB by default), and runs under QEMU TCG on a shared
2-core machine, so it gets the smallest real toolchain Debian has and a small real
project, all from Debian packages (``apt-get download``, cached like the rest):

- ``tcc`` (the Tiny C Compiler: compiler, assembler, linker and ``tcc -ar`` in one
  ~300 KB binary, where gcc-12 + binutils would add ~60 MB of RAM and compile far more
  slowly under TCG) and ``make``;
- ``libc6-dev`` (the C library's headers, crt files, linker scripts) and from
  ``linux-libc-dev`` only the kernel headers that the C library's headers include
  (:func:`header_closure`); the runtime libraries the linker scripts name come from
  this machine, like every other library in the image;
- the project: Lua 5.2 (33 C files, ~20 000 lines, its own upstream Makefiles),
  whose source Debian ships in ``librust-lua52-sys-dev``. It goes to
  :data:`PROJECT_DIR` with a ``GNUmakefile`` (:data:`GNUMAKEFILE`) that GNU make reads
  first, so a plain ``make -jN`` builds ``lua``, ``luac`` and ``liblua.a`` with tcc and
  ``make clean`` cleans, as in a kernel tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.sandbox.guest_image import (
    BinarySpec,
    ExtraFile,
    GuestImageError,
    Progress,
    fetch_packages,
)

COMPILER_PACKAGES = ("tcc", "make", "libc6-dev", "linux-libc-dev")
PROJECT_PACKAGE = "librust-lua52-sys-dev"
PROJECT_GLOB = "usr/share/cargo/registry/lua52-sys-*/lua"
PROJECT_DIR = "/usr/src/lua-5.2"
PROJECT_OUTPUTS = ("src/lua", "src/luac", "src/liblua.a")
"""What one build of the project makes, relative to its directory."""
COMPILER = "/usr/bin/tcc"
MAKE = "/usr/bin/make"
MULTIARCH = "usr/lib/x86_64-linux-gnu"
LIBRARY_DIR = "/lib/x86_64-linux-gnu"
TCC_LIBRARY_PATH = ("/usr/lib/x86_64-linux-gnu", "/usr/lib", LIBRARY_DIR, "/lib")
"""Where Debian's tcc looks for libraries (``tcc -vv``)."""
# From libc6-dev: what tcc links every program with, and the (empty) compatibility
# archives of libpthread/libdl/librt/libutil that -lpthread etc. ask for.
LIBC_DEV_FILES = (
    "crt1.o", "crti.o", "crtn.o", "libc.so", "libm.so", "libc_nonshared.a",
    "libpthread.a", "libdl.a", "librt.a", "libutil.a",
)  # fmt: skip

GNUMAKEFILE = """\
# Written by miglab: build Lua 5.2 with its own Makefiles (unchanged) and the guest's
# compiler, tcc, which also archives (the guest has no binutils). GNU make reads this
# file before Makefile, so a plain `make -jN` builds and `make clean` cleans.
LUA = $(MAKE) -f Makefile CC=tcc AR="tcc -ar rcs" RANLIB=true
all:
\t+$(LUA) posix
clean:
\t+$(LUA) clean
.PHONY: all clean
"""

_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.MULTILINE)
_SCRIPT_PATH = re.compile(r"(?<![\w/])(/[\w./+-]+)")


@dataclass
class CompilerPayload:
    """What :func:`compiler_payload` puts into the guest image."""

    binaries: list[BinarySpec] = field(default_factory=list)
    files: dict[str, ExtraFile] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)


async def fetch_compiler(cache_dir: Path, progress: Progress | None = None) -> list[Path]:
    """The unpacked compiler and project packages, in :data:`COMPILER_PACKAGES` order
    with :data:`PROJECT_PACKAGE` last (downloaded once into ``cache_dir``)."""
    return await fetch_packages(cache_dir, [*COMPILER_PACKAGES, PROJECT_PACKAGE], progress=progress)


def header_closure(start: Iterable[Path], search: Sequence[Path]) -> set[Path]:
    """Every header reachable by ``#include`` from ``start`` (blocking I/O).

    ``<name>`` is looked up in ``search`` in order, ``"name"`` first beside the file
    that includes it. Includes under any ``#if`` count too: a superset is harmless,
    a missing header is not. Names found nowhere are skipped (the compiler's own
    headers, or a branch for another system)."""
    seen: set[Path] = set()
    todo = [p for p in start if p.is_file()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for quote, name in _INCLUDE.findall(path.read_bytes()):
            relative = name.decode(errors="replace").strip()
            where = [path.parent, *search] if quote == b'"' else list(search)
            for directory in where:
                candidate = directory / relative
                if candidate.is_file():
                    todo.append(candidate.resolve() if candidate.is_symlink() else candidate)
                    break
    return seen


def _root_of(roots: Sequence[Path], package: str) -> Path:
    for root in roots:
        if root.name.split("_")[0] == package:
            return root
    raise GuestImageError(f"{package} is not among the unpacked packages")


def _image_path(root: Path, path: Path) -> str:
    return "/" + path.relative_to(root).as_posix()


def _tree(root: Path, directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def compiler_payload(roots: Sequence[Path], *, host_root: Path = Path("/")) -> CompilerPayload:
    """The binaries and files that put tcc, make, the C library's development files and
    the project into the image (blocking I/O). ``roots`` as :func:`fetch_compiler`
    returns them; ``host_root`` is where the libraries the linker scripts name are read."""
    tcc, make, libc_dev, kernel_dev, project = (
        _root_of(roots, name) for name in (*COMPILER_PACKAGES, PROJECT_PACKAGE)
    )
    out = CompilerPayload()
    out.binaries += [(tcc / "usr/bin/tcc", COMPILER), (make / "usr/bin/make", MAKE)]

    def add(root: Path, path: Path) -> None:
        out.files[_image_path(root, path)] = path.read_bytes()

    for path in _tree(tcc, tcc / MULTIARCH / "tcc"):
        if not path.name.startswith("i386-"):  # the 32-bit runtime: no 32-bit libc here
            add(tcc, path)
    libc_headers = _tree(libc_dev, libc_dev / "usr/include")
    for path in libc_headers:
        add(libc_dev, path)
    for name in LIBC_DEV_FILES:
        path = libc_dev / MULTIARCH / name
        if not path.is_file():
            raise GuestImageError(f"{libc_dev.name} has no {MULTIARCH}/{name}")
        add(libc_dev, path)
        if name.endswith(".so"):  # a linker script: the files it names must be there too
            for named in _SCRIPT_PATH.findall(path.read_text(errors="replace")):
                if (libc_dev / named.lstrip("/")).is_file():
                    continue  # libc_nonshared.a: from the package
                host = host_root / named.lstrip("/")
                if not host.is_file():
                    raise GuestImageError(f"{name} names {named}, which this machine lacks")
                # 0755 like the libraries ldd brings: the loader among them must be.
                out.files[named] = (host.resolve().read_bytes(), 0o755)
                # tcc looks up a library's own DT_NEEDED (libc.so.6 needs the loader) in
                # its library path, which /lib64 is not on: a link where Debian keeps it.
                if not any(named.startswith(d + "/") for d in TCC_LIBRARY_PATH):
                    out.symlinks[f"{LIBRARY_DIR}/{Path(named).name}"] = named

    trees = [p for p in project.glob(PROJECT_GLOB) if (p / "src" / "lua.c").is_file()]
    if len(trees) != 1:
        raise GuestImageError(f"{project.name} has no single Lua tree at {PROJECT_GLOB}")
    sources = _tree(trees[0], trees[0])
    for path in sources:
        out.files[f"{PROJECT_DIR}/{path.relative_to(trees[0]).as_posix()}"] = path.read_bytes()
    out.files[f"{PROJECT_DIR}/GNUmakefile"] = GNUMAKEFILE

    include = "usr/include"
    search = [
        libc_dev / include / "x86_64-linux-gnu",
        kernel_dev / include / "x86_64-linux-gnu",
        libc_dev / include,
        kernel_dev / include,
    ]
    for path in sorted(header_closure([*libc_headers, *sources], search)):
        if path.is_relative_to(kernel_dev):
            add(kernel_dev, path)
    return out
