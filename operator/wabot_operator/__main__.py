"""`python -m wabot_operator`: see main.run."""

from wabot_operator.main import run

raise SystemExit(run())
