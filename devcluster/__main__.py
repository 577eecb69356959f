"""`python -m devcluster up|down|status|env|build`: the local control plane from a shell.

`up` starts a cluster that outlives the command (state in $WABOT_DEVCLUSTER_DIR, default
/tmp/wabot-dev) and prints `export KUBECONFIG=...`; tests and kubectl then use it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from devcluster.cluster import LocalCluster
from devcluster.tools import find_tools

DEFAULT_DIR = Path(os.environ.get("WABOT_DEVCLUSTER_DIR", "/tmp/wabot-dev"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster")
    parser.add_argument("command", choices=["up", "down", "status", "env", "build"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--nodes", type=int, default=1, help="simulated (kwok) nodes")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(find_tools().bin_dir)
        return 0
    running = LocalCluster.load(args.dir)
    if args.command == "up":
        if running is None:
            started = time.monotonic()
            LocalCluster(root=args.dir, nodes=args.nodes).start()
            print(f"control plane up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        print(f"export KUBECONFIG={args.dir / 'kubeconfig'}")
        return 0
    if args.command == "down":
        if running is not None:
            running.stop()
        return 0
    if args.command == "status":
        print("running" if running else "stopped")
        return 0 if running else 1
    print(f"export KUBECONFIG={args.dir / 'kubeconfig'}" if running else "# not running")
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
