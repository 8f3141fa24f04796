"""Issue 13, LIO: `targetcli ls` of the old Datera/RisingTide targetcli (published tree)."""

from __future__ import annotations

from backend.drivers.parse_targetcli import parse_targetcli_ls
from tests.conftest import DATA

FIRST = "iqn.2016-01.ch.ethz.phys.storage1-dev:firstBundle"
SECOND = "iqn.2016-01.ch.ethz.phys.storage1-dev:secondBundle"
GW = "iqn.2016-01.ch.ethz.phys.storage-gw-dev"


def config_text() -> str:
    return (DATA / "lio" / "targetcli-ls-datera-2.x-ubuntu-tpgt-public.txt").read_text()


def test_old_targetcli_tpgt_and_mapped_luns_without_storage_object() -> None:
    config = parse_targetcli_ls(config_text())
    assert config.unparsed == 0
    assert [t.wwn for t in config.targets] == [FIRST, SECOND]
    first = config.target(FIRST)
    assert first is not None
    [tpg] = first.tpgs
    assert tpg.tag == 1 and tpg.flags == ("disabled",) and not tpg.enabled
    assert tpg.generate_node_acls is None  # "[disabled]" says nothing about demo mode
    [acl] = tpg.acls
    assert acl.initiator == GW and acl.auth is None
    assert [(m.mapped_lun, m.tpg_lun, m.plugin, m.write_protected) for m in acl.mapped_luns] == [
        (0, 0, None, False),
        (1, 1, None, False),
        (2, 2, None, False),
    ]
    assert [(lun.lun, lun.plugin, lun.storage_object, lun.path) for lun in tpg.luns] == [
        (0, "iblock", "test_1", "/dev/vgstorage01b/1g-chunk-01"),
        (1, "iblock", "test_2", "/dev/vgstorage01b/1g-chunk-02"),
        (2, "iblock", "test_3", "/dev/vgstorage01b/1g-chunk-03"),
    ]
    [portal] = tpg.portals
    assert (portal.address, portal.port, portal.status) == (
        "192.168.20.110",
        3260,
        "OK, iser disabled",
    )
    second = config.target(SECOND)
    assert second is not None and len(second.tpgs[0].luns) == 2


def test_old_targetcli_storage_objects_have_no_size() -> None:
    config = parse_targetcli_ls(config_text())
    assert [(s.plugin, s.name, s.path) for s in config.storage_objects][:2] == [
        ("iblock", "test_1", "/dev/vgstorage01b/1g-chunk-01"),
        ("iblock", "test_2", "/dev/vgstorage01b/1g-chunk-02"),
    ]
    assert len(config.storage_objects) == 5
    so = config.storage_objects[4]
    assert so.size is None and so.size_bytes is None and so.activated


def test_broken_links_and_stray_lines_are_counted_not_raised() -> None:
    text = config_text().replace("[lun1 (rw)]", "[BROKEN LUN LINK]", 1)
    text = "/> ls\n" + text + "/> exit\n"
    config = parse_targetcli_ls(text)
    assert config.unparsed == 3
    first = config.target(FIRST)
    assert first is not None
    assert [m.mapped_lun for m in first.tpgs[0].acls[0].mapped_luns] == [0, 2]
