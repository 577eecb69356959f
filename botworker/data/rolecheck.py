"""The worker's start-up check of its PostgreSQL role, run in a child process.

Before a worker uses a shared PostgreSQL it asks, as its own login role, whether that role is
bound to the bot's serverName, cannot lift row-level security, and finds the schema migrated
(tenancy.binding_problem). That takes SQLAlchemy, psycopg and a connection; a worker that
does it in a child (see child.py) loads them only when it first writes a row.

The child prints the answer as one JSON line and exits 0, whatever the answer; it exits
UNREACHABLE when the server cannot be reached (retried soon, nothing to fix in the role) and
1 when the server refused a query (the last stderr line says why):

    WABOT_CHECK_URL=postgresql://... python -m botworker.data.rolecheck acme
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict

from .subprocess_step import one_line, run_module
from .tenancy import Binding

URL_ENV = "WABOT_CHECK_URL"
UNREACHABLE = 3
TIMEOUT_S = 60.0


def check_in_child(url: str, server_name: str,
                   timeout_s: float = TIMEOUT_S) -> tuple[Binding | None, str]:
    """(the role's binding, "") when the check ran; (None, one-line reason) when it could
    not (the server unreachable, a query refused): both mean "try again later"."""
    done = run_module("botworker.data.rolecheck", [server_name], url, URL_ENV, timeout_s)
    if done.returncode == 0:
        try:
            return Binding(**json.loads(done.stdout)), ""
        except (ValueError, TypeError) as exc:
            return None, f"the role check printed no answer ({exc.__class__.__name__})"
    if done.returncode == UNREACHABLE:
        return None, f"database unreachable ({done.reason})"
    if done.returncode is None:
        return None, f"the role check {done.reason}"
    return None, done.reason


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = os.environ.get(URL_ENV, "")
    if len(args) != 1 or not url:
        print(f"usage: {URL_ENV}=<dsn> python -m botworker.data.rolecheck SERVER_NAME",
              file=sys.stderr)
        return 2
    from ..core.context import DatabaseUnavailable
    from .db import Database

    db = Database(url, args[0])
    try:
        binding = db.check_binding()
    except DatabaseUnavailable as exc:
        # The driver's own words ("password authentication failed for user ...", "connection
        # refused") tell the operator what to fix; SQLAlchemy's wrapper only names a class.
        cause = exc.__cause__
        print(one_line(getattr(cause, "orig", None) or cause or exc, url, 300), file=sys.stderr)
        return UNREACHABLE
    except Exception as exc:  # a query the server refused
        print(one_line(exc, url, 300), file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(json.dumps(asdict(binding)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
