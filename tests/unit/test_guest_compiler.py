"""What goes into the guest for the kernel-compile test: the header closure and the payload's
refusals (the image itself is built and booted in tests/integration/test_guest_image.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.sandbox.guest_compiler import compiler_payload, header_closure
from backend.sandbox.guest_image import GuestImageError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_header_closure_follows_includes_through_the_search_path(tmp_path: Path) -> None:
    libc, kernel = tmp_path / "libc", tmp_path / "kernel"
    errno = write(libc / "errno.h", "#include <bits/errno.h>\n#  include <stddef.h>\n")
    bits = write(
        libc / "bits/errno.h", '#if X\n# include <linux/errno.h>\n#endif\n#include "x.h"\n'
    )
    local = write(libc / "bits/x.h", "/* found beside bits/errno.h */\n")
    linux = write(kernel / "linux/errno.h", "#include <asm/errno.h>\n")
    asm = write(kernel / "asm/errno.h", "#include <asm-generic/errno.h>\n")
    generic = write(kernel / "asm-generic/errno.h", "#define EPERM 1\n")
    unused = write(kernel / "linux/kvm.h", "#include <linux/types.h>\n")
    found = header_closure([errno], [libc, kernel])
    # <stddef.h> is the compiler's own (found nowhere here): skipped, not an error.
    assert found == {errno, bits, local, linux, asm, generic}
    assert unused not in found


def test_payload_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(GuestImageError, match="tcc is not among the unpacked packages"):
        compiler_payload([tmp_path / "make_4.3-4.1_amd64"])
