#!/usr/bin/env bash
# The test command: every test, including the ones that start a real control plane and
# PostgreSQL. Extra arguments go to pytest (e.g. -m "not cluster", -k name, -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -m pytest "$@"
