"""Shared test helpers.

Tests that need a real system program call :func:`need`. On a developer's machine
a missing program skips the test; in CI (``MIGLAB_REQUIRE_SYSTEM=1``) it fails, so
a missing install step in .ci/run cannot hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REQUIRE_SYSTEM = os.environ.get("MIGLAB_REQUIRE_SYSTEM") == "1"


def need(*programs: str) -> dict[str, str]:
    """Return the paths of ``programs``; skip (or fail in CI) when one is missing."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for program in programs:
        path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
        if path is None:
            missing.append(program)
        else:
            found[program] = path
    if missing:
        message = f"needs {', '.join(missing)} (install it, see .ci/run)"
        if REQUIRE_SYSTEM:
            pytest.fail(message + " [MIGLAB_REQUIRE_SYSTEM=1]")
        pytest.skip(message)
    return found


def need_root() -> None:
    if os.geteuid() != 0:
        if REQUIRE_SYSTEM:
            pytest.fail("needs root [MIGLAB_REQUIRE_SYSTEM=1]")
        pytest.skip("needs root")
