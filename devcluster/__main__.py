"""`python -m devcluster up|down|status|env|build|load-image`: the local control plane from a
shell.

`up` starts a cluster that outlives the command (state in $WABOT_DEVCLUSTER_DIR, default
/tmp/wabot-dev) and prints `export KUBECONFIG=...`; tests and kubectl then use it. Beside the
kwok nodes it starts a real node (kubelet + containerd, devcluster/node.py) unless
`--no-real-node` is given; `load-image IMAGE` imports a podman-built image into that node.
`down` stops both and removes everything they made.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from devcluster.cluster import LocalCluster
from devcluster.node import RealNode, missing_prerequisites
from devcluster.tools import find_tools

DEFAULT_DIR = Path(os.environ.get("WABOT_DEVCLUSTER_DIR", "/tmp/wabot-dev"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster")
    parser.add_argument("command",
                        choices=["up", "down", "status", "env", "build", "load-image"])
    parser.add_argument("image", nargs="?", help="load-image: a podman image, e.g. "
                        "localhost/wabot-worker:dev")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--nodes", type=int, default=1, help="simulated (kwok) nodes")
    parser.add_argument("--no-real-node", action="store_true",
                        help="kwok nodes only (machines without containerd: see "
                        "scripts/setup.sh)")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(find_tools().bin_dir)
        return 0
    running = LocalCluster.load(args.dir)
    if args.command == "up":
        return _up(running, args)
    if args.command == "load-image":
        node = RealNode.load(running) if running is not None else None
        if node is None or not args.image:
            print("load-image IMAGE needs a running real node (python -m devcluster up)",
                  file=sys.stderr)
            return 1
        started = time.monotonic()
        from devcluster.images import load_image

        done = load_image(node, args.image)
        print(f"{args.image}: {'imported' if done else 'already there'} in "
              f"{time.monotonic() - started:.1f}s", file=sys.stderr)
        return 0
    if args.command == "down":
        # Also what is left of a cluster or node that partly died: every process, namespace
        # and cgroup it recorded goes.
        leftover = running or LocalCluster.load(args.dir, alive_only=False)
        if leftover is not None:
            node = RealNode.load(leftover)
            if node is not None:
                node.stop()
            leftover.stop()
        return 0
    if args.command == "status":
        print("running" if running else "stopped")
        return 0 if running else 1
    print(f"export KUBECONFIG={args.dir / 'kubeconfig'}" if running else "# not running")
    return 0 if running else 1


def _up(running: LocalCluster | None, args: argparse.Namespace) -> int:
    if not args.no_real_node and (missing := missing_prerequisites()):
        print(f"the real node needs {', '.join(missing)}: run scripts/setup.sh, or pass "
              "--no-real-node", file=sys.stderr)
        return 1
    started = time.monotonic()
    if running is None:
        running = LocalCluster(root=args.dir, nodes=args.nodes).start()
        print(f"control plane up in {time.monotonic() - started:.1f}s", file=sys.stderr)
    node = RealNode.load(running) if not args.no_real_node else None
    if node is not None and not node.alive():
        node.stop()  # a part of it died: start it afresh
        node = None
    if not args.no_real_node and node is None:
        _apiserver_reaches_kubelets(running)
        started = time.monotonic()
        RealNode(running).start()
        print(f"real node up in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(f"export KUBECONFIG={args.dir / 'kubeconfig'}")
    return 0


def _apiserver_reaches_kubelets(cluster: LocalCluster) -> None:
    """A control plane started before the real node existed lacks the API server's kubelet
    flags (kubectl logs/exec): restart its API server, on the same port, with today's."""
    pid = cluster.pids.get("kube-apiserver")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
    if b"--kubelet-client-certificate" not in cmdline:
        print("restarting kube-apiserver with the kubelet client flags", file=sys.stderr)
        cluster.restart_apiserver()


if __name__ == "__main__":
    sys.exit(main())
