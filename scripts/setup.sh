#!/usr/bin/env bash
# Installs what wabot needs on a fresh Debian machine (idempotent; fast when already done):
# system packages, the Python package with its dev extras, and the control-plane tools built
# from the Go module proxy into ~/.cache/wabot-tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
# chromium, chromium-driver, zbar-tools: the console's browser tests (tests/console).
# containerd, containernetworking-plugins, iptables, iproute2: the devcluster's real node
# (devcluster/node.py); ffmpeg: the worker's media conversions.
for pkg in postgresql openssl prometheus podman runc debootstrap chromium chromium-driver zbar-tools \
           containerd containernetworking-plugins iptables iproute2 ffmpeg; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# Debian's package starts a cluster of its own; the tests start throwaway servers instead.
command -v go >/dev/null || { echo "setup: Go is required to build the control plane tools" >&2; exit 1; }

python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

bash devcluster/build-tools.sh >/dev/null
echo "setup: done (tools in $(bash devcluster/build-tools.sh --check))"
