"""The role switch from the seed: one image, one entry point, the role picked by `ROLE`.

`worker` runs one bot (BOT_ID required), `operator` runs the Kubernetes operator. Each role's
package is imported only when chosen, so a worker never pays for kopf and an operator never
loads neonize.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

ROLES = ("worker", "operator")


def _worker(argv: list[str]) -> int:
    from botworker.main import run

    return run(argv)


def _operator(argv: list[str]) -> int:
    from wabot_operator.main import run

    return run(argv)


RUNNERS: dict[str, Callable[[list[str]], int]] = {"worker": _worker, "operator": _operator}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    role = os.environ.get("ROLE") or os.environ.get("DEPLOYMENT_ROLE") or ""
    if args and args[0] in RUNNERS:
        role = args.pop(0)
    if role not in RUNNERS:
        shown = role or "(unset)"
        print(f"wabot: ROLE={shown} is not one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    return RUNNERS[role](args)


if __name__ == "__main__":
    sys.exit(main())
