#!/usr/bin/env bash
# Stops what scripts/up.sh started: the local operator and the local control plane.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
state="${WABOT_DEVCLUSTER_DIR:-/tmp/wabot-dev}"
if [ -f "$state/gateway.pid" ]; then  # the console's gateway (scripts/console-up.sh)
  kill "$(cat "$state/gateway.pid")" 2>/dev/null || true
  rm -f "$state/gateway.pid"
fi
if [ -f "$state/operator.pid" ]; then
  kill "$(cat "$state/operator.pid")" 2>/dev/null || true
  rm -f "$state/operator.pid"
fi
python3 -m devcluster down --dir "$state"
