"""Which QEMU the sandbox's guest runs on, and the launcher of the one it fetches."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from backend.config import parse_lab
from backend.sandbox.guest_image import GuestImage
from backend.sandbox.guest_qemu import (
    BACKPORTS_SOURCE,
    MIN_VERSION,
    apt_options,
    guest_qemu,
    launcher_script,
    parse_version,
)
from backend.sandbox.lab_file import LabSpec, render
from backend.sandbox.layout import SandboxLayout
from backend.sandbox.network import SandboxNetwork


def test_versions_as_qemu_prints_them() -> None:
    assert parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n") == (
        7,
        2,
        22,
    )
    assert parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)") == (10, 0, 2)
    assert parse_version("QEMU emulator version 8.1") == (8, 1)
    assert parse_version("qemu-system-x86_64: not a version") is None
    assert (7, 2, 22) < MIN_VERSION <= (10, 0, 2)


def fake_qemu(tmp_path: Path, says: str) -> Path:
    program = tmp_path / "qemu-system-x86_64"
    program.write_text(f"#!/bin/sh\necho '{says}'\n")
    program.chmod(0o755)
    return program


def test_a_new_enough_qemu_on_this_machine_is_used_and_nothing_is_fetched(
    tmp_path: Path,
) -> None:
    system = fake_qemu(tmp_path, "QEMU emulator version 10.1.0 (Debian 1:10.1.0)")
    chosen = asyncio.run(guest_qemu(tmp_path / "cache", str(system)))
    assert (chosen.binary, chosen.version, chosen.release) == (str(system), "10.1.0", "10.1")
    assert not (tmp_path / "cache").exists()


def test_the_launcher_runs_the_unpacked_qemu_with_its_own_modules_and_data(
    tmp_path: Path,
) -> None:
    roots = {
        name: tmp_path / f"root of {name}"
        for name in ("qemu-system-x86", "qemu-system-data", "qemu-block-extra")
    }
    binary = roots["qemu-system-x86"] / "usr/bin/qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    # Stands in for QEMU: shows the environment and arguments it was started with.
    binary.write_text(
        '#!/bin/sh\necho "modules=$QEMU_MODULE_DIR"\nfor a in "$@"; do echo "arg=$a"; done\n'
    )
    binary.chmod(0o755)
    launcher = tmp_path / "launcher"
    launcher.write_text(launcher_script(roots))
    launcher.chmod(0o755)
    out = subprocess.run(
        [str(launcher), "--version", "a b"], capture_output=True, text=True, check=True
    )
    modules = roots["qemu-block-extra"] / "usr/lib/x86_64-linux-gnu/qemu"
    data = roots["qemu-system-data"] / "usr/share/qemu"
    assert out.stdout.splitlines() == [
        f"modules={modules}",
        "arg=-L",
        f"arg={data}",
        "arg=--version",
        "arg=a b",
    ]


def test_apt_uses_a_list_of_its_own_not_the_machines(tmp_path: Path) -> None:
    options = apt_options(tmp_path / "apt")
    assert f"Dir::Etc::SourceList={tmp_path}/apt/sources.list" in options
    assert "Dir::Etc::SourceParts=/dev/null" in options
    assert f"Dir::State::Lists={tmp_path}/apt/lists" in options
    assert BACKPORTS_SOURCE.startswith("deb http://deb.debian.org/debian bookworm-backports ")


def test_the_sandbox_lab_file_names_its_qemu_and_the_release_for_predictions(
    tmp_path: Path,
) -> None:
    image = GuestImage.model_construct(kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd")
    layout = SandboxLayout(tmp_path)
    spec = LabSpec(
        net=SandboxNetwork(4),
        layout=layout,
        image=image,
        link_mbit=100,
        guest_mb=256,
        tgt_control_port=6204,
        qemu_binary=str(tmp_path / "qemu" / "bin" / "qemu-system-x86_64"),
        qemu_version="10.0",
    )
    lab = parse_lab(render(spec), file=str(layout.lab_file), base_dir=tmp_path)
    assert lab.guest.qemu is not None
    assert lab.guest.qemu.binary == str(tmp_path / "qemu" / "bin" / "qemu-system-x86_64")
    # `miglab run --sim --lab` of this file predicts with QEMU 10's rules, not 7.2's.
    assert lab.simulation is not None and lab.simulation.qemu_version == "10.0"
