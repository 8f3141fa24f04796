"""`miglab sandbox up --hypervisor xen` checks root and packages before it makes anything.

The same check as the QEMU sandbox's (backend/sandbox/preflight.py, whose message for
missing packages tests/e2e/test_sandbox.py checks), reached through the Xen path's own
command line: exit 2, the reason named, no traceback, nothing made.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import need
from tests.e2e.conftest import miglab


def test_xen_up_without_root_exits_2_and_makes_nothing(tmp_path: Path) -> None:
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = need("setpriv")["setpriv"]
        prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    directory = tmp_path / "sandbox"
    result = miglab("sandbox", "up", "--hypervisor", "xen", "--dir", str(directory), prefix=prefix)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "needs root" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not directory.exists()
