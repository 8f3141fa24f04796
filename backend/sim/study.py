"""The 2009 study's lab as miglab simulates it, with nothing else imported.

Kept apart from :mod:`backend.sim.labs` (the simulated machines), and its models imported
only by :func:`study_lab`, so that what only needs the lab's description (the demo's first
frame: its host names, from :data:`STUDY_LAB_TOML` as read by tomllib) loads neither the
simulation nor the config models.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from backend.config import LabConfig

STUDY_LAB_TOML = """\
# The 2009 UFLA study's lab (REFERENCE.md), as miglab simulates it.
[lab]
name = "ufla-2009"
link_mbit = 100
description = "Simulated: the 2009 study's lab (Xen + IET iSCSI, 100 Mbit/s, one switch)"

[hosts.iSCSIserver]
address = "192.168.0.1"
user = "root"

[hosts.xenserver1]
address = "192.168.0.2"
user = "root"

[hosts.xenserver2]
address = "192.168.0.3"
user = "root"

[storage]
host = "iSCSIserver"
driver = "iet"
iqn = "iqn.2009-06.br.ufla.lab:guest-disk"
lun = 1
device = "/dev/sdb1"
portal = "192.168.0.1:3260"

[hypervisor]
driver = "xen"
hosts = ["xenserver1", "xenserver2"]

[guest]
name = "guest"
address = "192.168.0.50"
user = "root"
vcpus = 2
memory_mb = 1024
config = "/etc/xen/guest.cfg"
"""


def study_lab() -> LabConfig:
    """The study's lab, as a LabConfig (addresses as in lab.toml: not reachable)."""
    from backend.config import parse_lab

    return parse_lab(STUDY_LAB_TOML, file="<the study's lab>")


def study_lab_data() -> dict[str, Any]:
    """:data:`STUDY_LAB_TOML` as plain data, unchecked: for what needs only its names."""
    return tomllib.loads(STUDY_LAB_TOML)
