#!/usr/bin/env bash
# Runs the benchmarks from the repository root: bench/run.sh [--quick] [--only NAME] ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -m bench "$@"
