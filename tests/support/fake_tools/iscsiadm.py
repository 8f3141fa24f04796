"""``iscsiadm`` as a program: :mod:`backend.sim.tools.iscsiadm` on a state file.

``python -m tests.support.fake_tools.iscsiadm ARGS``.
"""

from __future__ import annotations

from backend.sim.tools.iscsiadm import PROGRAM, run
from tests.support.fake_tools import run_main


def main() -> None:
    run_main(PROGRAM, run)


if __name__ == "__main__":
    main()
