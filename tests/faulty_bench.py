"""``python -m tests.faulty_bench ARGS``: the ``bench`` command line with a fault plugged into its seams.

The fault is read from ``LOSSBENCH_FAULT`` (its syntax: :mod:`tests.faults`); without it this is
plain ``bench``. For the tests whose fault ends the process (SIGKILL), which need a process of
their own; it runs ``bench.cli.main.app`` as the console script does, given ``obj=Seams(...)``.
"""

from __future__ import annotations

import os

from bench.cli.main import app
from tests.faults import seams


def main() -> None:
    app(obj=seams(os.environ.get("LOSSBENCH_FAULT", "")))


if __name__ == "__main__":  # a spawned pool worker imports this module too: it must not run the app then
    main()
