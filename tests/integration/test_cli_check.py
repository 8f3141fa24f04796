"""`miglab check` end to end, as a user runs it (a separate process, real sshd)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.sshd import Sshd, free_port

ROOT = Path(__file__).resolve().parents[2]


def miglab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def lab_file(tmp_path: Path, hosts: str, storage: str, first: str, second: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(
        f"""\
[lab]
name = "loopback"
link_mbit = 1000

{hosts}
[storage]
host = "{storage}"
driver = "tgt"
iqn = "iqn.2026-11.test.miglab:disk"
device = "/tmp/disk.img"
portal = "127.0.0.1:3260"

[hypervisor]
driver = "qemu"
hosts = ["{first}", "{second}"]

[guest]
name = "guest"
address = "127.0.0.1"
vcpus = 1
memory_mb = 256

[guest.qemu]
kernel = "/boot/vmlinuz"
"""
    )
    return path


def test_reference_lab_is_valid() -> None:
    result = miglab("check", "--lab", "lab.toml")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "ufla-2009" in result.stdout and "iet" in result.stdout


def test_bad_lab_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    text = (ROOT / "lab.toml").read_text().replace('user = "root"', 'usr = "root"', 1)
    bad = tmp_path / "typo.toml"
    bad.write_text(text)
    line = text.splitlines().index('usr = "root"') + 1
    result = miglab("check", "--lab", str(bad))
    assert result.returncode == 2
    assert f"{bad}:{line}: hosts.iscsiserver.usr: unknown key" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_lab_exits_2(tmp_path: Path) -> None:
    result = miglab("check", "--lab", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "nope.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_arguments_exit_2() -> None:
    result = miglab("check", "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_schema_is_json_schema() -> None:
    result = miglab("check", "--schema")
    schema = json.loads(result.stdout)
    assert result.returncode == 0
    assert set(schema["properties"]) >= {"lab", "hosts", "storage", "hypervisor", "guest"}


def test_check_connect_json_against_real_sshd(sshd: Sshd, tmp_path: Path) -> None:
    hosts = (
        sshd.host_toml("storage")
        + "\n"
        + sshd.host_toml("hv1")
        + '\n[hosts.hv2]\naddress = "local"\n'
    )
    lab = lab_file(tmp_path, hosts, "storage", "hv1", "hv2")
    result = miglab("check", "--lab", str(lab), "--connect", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["lab"] == "loopback" and set(report["hosts"]) == {"storage", "hv1", "hv2"}
    uname = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
    for name, host in report["hosts"].items():
        assert host["reachable"] is True and host["error"] is None, name
        assert host["kernel"] == uname
        assert isinstance(host["rtt_ms"], float) and host["rtt_ms"] >= 0
        assert host["tools"]["ping"] is not None  # iputils-ping is installed here
        assert set(host["tools"]) >= {"tgtadm", "iscsiadm", "xl", "qemu-system-x86_64"}
        assert host["tools"]["xl"] is None  # no Xen on this machine
    assert report["hosts"]["hv1"]["rtt_ms"] > 0


def test_check_connect_reports_an_unreachable_host_and_exits_1(sshd: Sshd, tmp_path: Path) -> None:
    dead = free_port()
    hosts = (
        sshd.host_toml("storage")
        + "\n"
        + sshd.host_toml("hv1")
        + f'\n[hosts.hv2]\naddress = "127.0.0.1"\nport = {dead}\nconnect_timeout_s = 3\n'
    )
    lab = lab_file(tmp_path, hosts, "storage", "hv1", "hv2")
    result = miglab("check", "--lab", str(lab), "--connect", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["hosts"]["storage"]["reachable"] and report["hosts"]["hv1"]["reachable"]
    down = report["hosts"]["hv2"]
    assert down["reachable"] is False and f"127.0.0.1:{dead}" in down["error"]
    human = miglab("check", "--lab", str(lab), "--connect")
    assert human.returncode == 1 and "hv2" in human.stdout and "UNREACHABLE" in human.stdout
