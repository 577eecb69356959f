"""`python -m wabot_cli` is the `wabot` command (what the console script runs): how the fleet
starts its workers (`python -m wabot_cli worker`) and how to run the command from a checkout."""

import sys

from wabot_cli.commands import main

sys.exit(main())
