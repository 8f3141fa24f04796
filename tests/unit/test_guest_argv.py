"""The guest's QEMU command line: where its console goes."""

from __future__ import annotations

from pathlib import Path

from backend.drivers.qemu_argv import qemu_guest_argv
from backend.sandbox.guest_image import GuestImage


def argv(tmp_path: Path) -> list[str]:
    image = GuestImage.model_construct(kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd")
    return qemu_guest_argv(
        image,
        memory_mb=256,
        qmp_socket=tmp_path / "guest.qmp",
        serial_log=tmp_path / "guest.h1.log",
    )


def test_the_console_is_appended_to_not_truncated(tmp_path: Path) -> None:
    line = argv(tmp_path)
    assert line[line.index("-serial") + 1] == "chardev:console0"
    assert f"file,id=console0,path={tmp_path}/guest.h1.log,append=on" in line
