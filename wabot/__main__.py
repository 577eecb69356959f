"""`python -m wabot` is the same entry point as the `wabot` command."""

import sys

from wabot.cli import main

sys.exit(main())
