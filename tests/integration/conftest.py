"""Fixtures for tests against real programs on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.sshd import Sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real OpenSSH sshd on 127.0.0.1 with generated keys."""
    path = need("sshd", "ssh-keygen")["sshd"]
    server = Sshd(path, tmp_path_factory.mktemp("sshd"))
    server.setup()
    server.start()
    yield server
    server.stop()


def make_sshd(directory: Path, client_key: Path | None = None, extra_config: str = "") -> Sshd:
    path = need("sshd", "ssh-keygen")["sshd"]
    server = Sshd(path, directory, extra_config=extra_config)
    server.setup(client_key)
    server.start()
    return server
