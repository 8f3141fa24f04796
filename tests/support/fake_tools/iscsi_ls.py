"""``iscsi-ls`` as a program: :mod:`backend.sim.tools.iscsi_ls` on a state file.

``python -m tests.support.fake_tools.iscsi_ls ARGS``. libiscsi reads the CHAP password
from ``LIBISCSI_CHAP_PASSWORD`` too; this folds it into the URL, so that the fake's
``run`` stays a pure function of its arguments.
"""

from __future__ import annotations

import os
import sys

from backend.sim.tools.iscsi_ls import PROGRAM, run
from tests.support.fake_tools import run_main


def main() -> None:
    password = os.environ.get("LIBISCSI_CHAP_PASSWORD")
    if password:
        for i, word in enumerate(sys.argv):
            if word.startswith("iscsi://") and "@" in word and "%" not in word.split("@")[0]:
                user, _, rest = word[len("iscsi://") :].partition("@")
                sys.argv[i] = f"iscsi://{user}%{password}@{rest}"
    run_main(PROGRAM, run)


if __name__ == "__main__":
    main()
