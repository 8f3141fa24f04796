"""What every `miglab` subcommand shares: exit codes, the bad-input error, loading a lab."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.config import LabConfig

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_LAB = os.environ.get("MIGLAB_LAB", "lab.toml")


class BadInput(Exception):
    """Reported as one paragraph on stderr, exit 2, no traceback."""


def load(path: str) -> LabConfig:
    """Load a lab file, turning every problem in it into one BadInput message."""
    from backend.config import load_lab  # pydantic: not for `miglab --help`
    from backend.tomlfile import ConfigError

    try:
        return load_lab(path)
    except ConfigError as err:
        raise BadInput("\n".join(str(e) for e in err.errors)) from None
