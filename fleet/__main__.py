"""`python -m fleet COMMAND`: the fleet's tools; the table is fleet/commands.py."""

from __future__ import annotations

import sys

from .commands import COMMANDS as COMMANDS  # older callers import the table from here
from .commands import main as main

if __name__ == "__main__":
    sys.exit(main())
