"""`python -m wabot`: an alias of the `wabot` command (`python -m wabot_cli`), kept for the
command lines written before the command line moved above the tiers.

The shared package imports no tier and nothing above it, so the alias does not import the
command line: it replaces this process with `python -m wabot_cli` (the same process id,
arguments, interpreter options, environment and open files). Starting another program is not
an import (tests/test_layers.py). Never imported: only run.
"""

import os
import sys


def _argv() -> list[str]:
    """This process's command line with `-m wabot` turned into `-m wabot_cli`."""
    argv = list(sys.orig_argv)
    for i, arg in enumerate(argv):
        if arg == "-m" and argv[i + 1:i + 2] == ["wabot"]:
            return [sys.executable, *argv[1:i], "-m", "wabot_cli", *argv[i + 2:]]
        if arg == "-mwabot":
            return [sys.executable, *argv[1:i], "-m", "wabot_cli", *argv[i + 1:]]
    return [sys.executable, "-m", "wabot_cli", *sys.argv[1:]]


if __name__ == "__main__":
    os.execv(sys.executable, _argv())
