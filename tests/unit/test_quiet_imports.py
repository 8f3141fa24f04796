"""Importing miglab's SSH side prints nothing: a library's import-time warning on stderr
would stand in front of every CLI message (cryptography 51 warns about DSA as asyncssh
loads). Run with every warning shown, as a fresh interpreter sees them."""

import subprocess
import sys


def test_the_ssh_side_imports_without_a_word_on_stderr() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "default",
            "-c",
            "import backend.transport.ssh, backend.sim.lab, backend.sim.server",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_command_that_reads_files_does_not_load_ssh() -> None:
    # `miglab import` only reads a file: asyncssh (and cryptography) stay unloaded.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tui.commands.importer, backend.transport; "
            "print('asyncssh' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
