"""`python -m wabot` is the `wabot` command (workers are started as `python -m wabot worker`).

The command line lives above every tier, in `wabot_cli`; this program hands over to it by
name, as the `wabot` console script does (pyproject.toml), so the shared package imports no tier
and nothing above it. Never imported: only run.
"""

import importlib
import sys

sys.exit(importlib.import_module("wabot_cli.commands").main())
