"""targetcli ls parser. LIO cannot run here: tests/data/lio holds trees composed in the
layout of public targetcli-fb output (see its README).
"""

from __future__ import annotations

import pytest

from backend.drivers import ParseError
from backend.drivers.parse_targetcli import parse_targetcli_ls, parse_tree
from tests.conftest import DATA

LIO = DATA / "lio"
IQN = "iqn.2024-01.lab.storage:disk1"


def read(name: str) -> str:
    return (LIO / name).read_text()


def test_full_tree_backstores() -> None:
    cfg = parse_targetcli_ls(read("targetcli-ls-lab.txt"))
    block = cfg.storage_object("block", "disk1")
    assert block is not None
    assert (block.path, block.size, block.size_bytes) == ("/dev/vg0/guest", "10.0GiB", 10 << 30)
    assert block.activated and not block.write_back
    scratch = cfg.storage_object("fileio", "scratch")
    assert scratch is not None and scratch.write_back and scratch.size_bytes == 1 << 30
    assert [s.name for s in cfg.storage_objects] == ["disk1", "scratch"]
    assert dict(cfg.other_fabrics) == {
        "loopback": "Targets: 0",
        "vhost": "Targets: 0",
        "xen-pvscsi": "Targets: 0",
    }


def test_full_tree_target_tpg_luns_acls_portals() -> None:
    cfg = parse_targetcli_ls(read("targetcli-ls-lab.txt"))
    target = cfg.target(IQN)
    assert target is not None
    [tpg] = target.tpgs
    assert tpg.tag == 1 and tpg.flags == ("no-gen-acls", "no-auth")
    assert tpg.enabled and not tpg.generate_node_acls
    [lun] = tpg.luns
    assert (lun.lun, lun.plugin, lun.storage_object) == (0, "block", "disk1")
    assert (lun.path, lun.alua_group) == ("/dev/vg0/guest", "default_tg_pt_gp")
    assert tpg.initiators() == ("iqn.2024-01.lab.client:xen1", "iqn.2024-01.lab.client:xen2")
    mapped = tpg.acls[1].mapped_luns[0]
    assert (mapped.mapped_lun, mapped.tpg_lun, mapped.storage_object) == (0, 0, "disk1")
    assert not mapped.write_protected and tpg.acls[0].auth is None
    [portal] = tpg.portals
    assert (portal.address, portal.port, portal.status) == ("198.18.0.1", 3260, "OK")


def test_older_targetcli_without_alua() -> None:
    cfg = parse_targetcli_ls(read("targetcli-ls-lab-el7-style.txt"))
    lun = cfg.targets[0].tpgs[0].luns[0]
    assert lun.path == "/dev/vg0/guest" and lun.alua_group is None
    assert dict(cfg.other_fabrics) == {"loopback": "Targets: 0"}


def test_iscsi_subtree_demo_mode_long_line_and_ipv6_portal() -> None:
    cfg = parse_targetcli_ls(read("targetcli-ls-iscsi-demo-mode.txt"))
    assert cfg.storage_objects == ()
    tpg = cfg.targets[0].tpgs[0]
    assert tpg.generate_node_acls and tpg.acls == ()
    # This LUN line is wider than the console: no dots, two spaces before "[".
    assert "o- lun0  [fileio/" in read("targetcli-ls-iscsi-demo-mode.txt")
    assert tpg.luns[0].storage_object.endswith("with-a-long-name")
    assert tpg.luns[0].path == "/srv/lab/disk2.img"
    assert [(p.address, p.port) for p in tpg.portals] == [("0.0.0.0", 3260), ("::0", 3260)]


def test_acl_auth_and_read_only_mapping_and_disabled_tpg() -> None:
    text = (
        "o- iscsi .................................... [Targets: 1]\n"
        "  o- iqn.2024-01.lab.storage:disk1 ............ [TPGs: 1]\n"
        "    o- tpg1 ...................................... [disabled]\n"
        "      o- acls .................................... [ACLs: 1]\n"
        "        o- iqn.2024-01.lab.client:xen1  [mutual auth, Mapped LUNs: 1]\n"
        "          o- mapped_lun0 ........... [lun0 block/disk1 (ro)]\n"
    )
    tpg = parse_targetcli_ls(text).targets[0].tpgs[0]
    assert not tpg.enabled
    assert tpg.acls[0].auth == "mutual auth"
    assert tpg.acls[0].mapped_luns[0].write_protected


def test_generic_tree() -> None:
    root = parse_tree(read("targetcli-ls-lab.txt"))
    assert root.name == "/" and [c.name for c in root.children][:2] == ["backstores", "iscsi"]
    backstores = root.child("backstores")
    assert backstores is not None and backstores.summary == "..."
    block = backstores.child("block")
    assert block is not None and block.children[0].child("alua") is not None


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("o- / ... [...]\n  this is not a node\n", "  this is not a node"),
        ("o- / ... [...]\n      o- too-deep ... [x]\n", "      o- too-deep ... [x]"),
        ("o- / ... [...]\no- / ... [...]\n", "o- / ... [...]"),
        (
            "o- iscsi ... [Targets: 1]\n  o- iqn.x:y ... [TPGs: 1]\n    o- group1 ... [x]\n",
            "    o- group1 ... [x]",
        ),
        (
            "o- iscsi ... [Targets: 1]\n  o- iqn.x:y ... [TPGs: 1]\n    o- tpg1 ... [x]\n"
            "      o- luns ... [LUNs: 1]\n        o- lun0 ... [not a lun summary]\n",
            "        o- lun0 ... [not a lun summary]",
        ),
    ],
)
def test_garbage_is_skipped_and_counted(text: str, bad: str) -> None:
    # Each text has exactly one line (``bad``) the parser cannot place: it is counted.
    assert bad in text.splitlines()
    assert parse_targetcli_ls(text).unparsed == 1


def test_output_with_no_tree_at_all_is_an_error() -> None:
    with pytest.raises(ParseError):
        parse_targetcli_ls("targetcli: command not found\n")
