"""Issue 13, tgt: `--op show --mode target` of older tgt releases (published samples)."""

from __future__ import annotations

from backend.drivers.parse_tgt import parse_show_target
from tests.conftest import DATA


def show(name: str) -> str:
    return (DATA / "tgt" / f"show-target-readme-{name}.stdout").read_text()


def test_tgt_0_9_backing_store_line_and_size_without_block_size() -> None:
    [t] = parse_show_target(show("mmc-idle"))
    assert (t.tid, t.iqn, t.driver, t.state) == (
        1,
        "iqn.2007-03:virtual-dvd:ronnie",
        "iscsi",
        "ready",
    )
    assert [lun.lun for lun in t.luns] == [0, 1, 2]
    lun0, lun1, lun2 = t.luns
    assert lun0.is_controller and lun0.backing_store_path is None
    assert (lun0.size_mb, lun0.block_size, lun0.backing_store_type) == (0, None, None)
    assert (lun1.type, lun1.scsi_sn, lun1.online, lun1.removable) == (
        "cd/dvd",
        "STGTDVD0",
        False,
        True,
    )
    assert lun1.readonly is None  # 0.9.x prints no Readonly line
    assert (lun2.type, lun2.backing_store_path) == ("changer", "/root/smc")
    assert t.acls == ("ALL",) and t.nexuses == () and t.unparsed == 0


def test_tgt_0_9_sample_with_a_glued_first_line() -> None:
    [t] = parse_show_target(show("mmc-loaded"))
    assert (t.iqn, t.driver, t.state) == ("iqn.2007-03:virtual-dvd:ronnie", "iscsi", "ready")
    [nexus] = t.nexuses
    assert (nexus.nexus_id, nexus.initiator) == (1, "iqn.1993-08.org.debian:ronnie")
    assert nexus.addresses == ("127.0.0.1",)
    assert t.lun(1) is not None and t.lun(1).backing_store_path == "/root/vtl/DISK_001"  # type: ignore[union-attr]
    assert t.lun(1).online is True  # type: ignore[union-attr]
    assert t.unparsed == 0


def test_tgt_1_0_before_1_0_12_size_in_mb_and_no_block_size() -> None:
    [t] = parse_show_target(show("passthrough-two-luns"))
    assert (t.iqn, t.state) == ("iqn.2001-04.com.example:storage.vtl.amiens.sys1.xyz", "running")
    lun0, lun1, lun2 = t.luns
    assert lun0.size_mb is None  # printed "Size: 0" with no unit: not read as MB
    assert (lun1.type, lun1.scsi_id, lun1.size_mb, lun1.block_size) == (
        "(null)",
        "IET     00010002",
        0,
        None,
    )
    assert (lun1.backing_store_type, lun1.backing_store_path) == ("sg", "/dev/sg4")
    assert lun2.backing_store_path == "/dev/sg5" and lun2.backing_store_flags == ""
    assert t.acls == ("ALL",) and t.unparsed == 0
    [one] = parse_show_target(show("passthrough-one-lun"))
    assert [lun.lun for lun in one.luns] == [0] and one.acls == ()


def test_current_format_survives_a_copy_that_lost_the_indentation() -> None:
    # Real 1.0.85 capture with every line's indentation removed (as some web pages show
    # pasted output): the tree is read from the keys, so nothing is lost.
    text = (DATA / "tgt" / "show-target-sessions.stdout").read_text()
    flat = "\n".join(line.lstrip() for line in text.splitlines())
    assert flat != text
    assert parse_show_target(flat) == parse_show_target(text)
    assert len(parse_show_target(flat)[0].nexuses) == 2
