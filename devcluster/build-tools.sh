#!/usr/bin/env bash
# Builds the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm), the real node's kubelet and pause binary
# (devcluster/node.py) and the chart linter kube-score from the Go module proxy,
# at the versions pinned in versions.env, into a cache shared by every checkout on the machine.
# A second run finds every binary and returns at once; only the first run on a machine pays for
# the build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${WABOT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wabot-tools}"
# BUILD_REV changes when the way the binaries are built changes (r2: version stamps), so a
# cache built the old way is not reused.
BUILD_REV=r2
bin="$cache/bin-k8s${KUBERNETES_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}-helm${HELM_VERSION}-${BUILD_REV}"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--trimpath}" GOTOOLCHAIN=local

staging_version="v0.${KUBERNETES_VERSION#v1.}"
work="$cache/src"
mkdir -p "$work"

have() { [ -x "$bin/$1" ]; }
# kube-score's version is not part of the directory's name (a linter bump must not rebuild
# Kubernetes): a stamp next to the binary says which version it is, and another is rebuilt.
have_kube_score() { have kube-score && [ "$(cat "$bin/kube-score.version" 2>/dev/null)" = "$KUBE_SCORE_VERSION" ]; }

if [ "${1:-}" = "--check" ]; then  # report the bin dir only if everything is there
  for t in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kwok helm \
           wabot-pause; do
    have "$t" || { echo "missing $bin/$t" >&2; exit 1; }
  done
  have_kube_score || { echo "missing $bin/kube-score $KUBE_SCORE_VERSION" >&2; exit 1; }
  echo "$bin"; exit 0
fi

build_module() { # build_module <dir> <module-file-contents> <ldflags> <packages...>
  local dir="$1" gomod="$2" ldflags="$3"; shift 3
  mkdir -p "$dir"
  printf '%s\n' "$gomod" > "$dir/go.mod"
  # tools.go holds blank imports so `go mod tidy` keeps the requirements.
  { echo '//go:build tools'; echo; echo 'package tools'; echo; echo 'import ('
    for p in "$@"; do echo "	_ \"$p\""; done; echo ')'; } > "$dir/tools.go"
  (cd "$dir" && go mod tidy && go build -ldflags "$ldflags" -o "$bin/" "$@")
}

# Only the missing ones: a cache from before the real node gained its kubelet builds just that.
k8s_missing=()
for t in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
  have "$t" || k8s_missing+=("k8s.io/kubernetes/cmd/$t")
done
if [ "${#k8s_missing[@]}" -gt 0 ]; then
  echo "building kubernetes $KUBERNETES_VERSION (${k8s_missing[*]##*/})" >&2
  replaces=""
  for m in $(sed -n '/^replace (/,/^)/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.mod" 2>/dev/null | awk '/=>/{print $1}'); do
    replaces+="	$m => $m $staging_version"$'\n'
  done
  if [ -z "$replaces" ]; then
    (cd "$work" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null)
    for m in $(sed -n '/^replace (/,/^)/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.mod" | awk '/=>/{print $1}'); do
      replaces+="	$m => $m $staging_version"$'\n'
    done
  fi
  # Stamp the version as Kubernetes' own release build does: without it the API server reports
  # v0.0.0-master and nothing can check a minimum Kubernetes version against it.
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  k8s_ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  build_module "$work/kubernetes" "module wabot.local/k8stools

go 1.24.0

require k8s.io/kubernetes ${KUBERNETES_VERSION}

replace (
${replaces})" "$k8s_ldflags" "${k8s_missing[@]}"
fi

if ! have wabot-pause; then
  # The real node's pod sandbox process (its pause image, devcluster/images.py): it holds the
  # pod's namespaces, reaps orphans and exits 0 on SIGTERM/SIGINT, as Kubernetes' own pause.
  echo "building wabot-pause" >&2
  mkdir -p "$work/pause"
  cat > "$work/pause/main.go" <<'GO'
// Command wabot-pause holds a pod's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  printf 'module wabot.local/pause\n\ngo 1.24.0\n' > "$work/pause/go.mod"
  (cd "$work/pause" && go build -ldflags "-s -w" -o "$bin/wabot-pause" .)
fi

if ! have etcd; then
  echo "building etcd $ETCD_VERSION" >&2
  mkdir -p "$work/etcd/cmd/etcd"
  cat > "$work/etcd/cmd/etcd/main.go" <<'GO'
// Command etcd is etcd's own server entry point, built as a plain binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  printf 'module wabot.local/etcdtools\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$work/etcd/go.mod"
  (cd "$work/etcd" && go mod tidy && go build -o "$bin/etcd" ./cmd/etcd)
fi

if ! have kwok; then
  echo "building kwok $KWOK_VERSION" >&2
  GOBIN="$bin" go install "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
fi
if [ ! -s "$bin/kwok-stages.yaml" ]; then
  # kwok simulates nothing without stages; take its own default ones from the same module.
  (cd "$work" && go mod download "sigs.k8s.io/kwok@${KWOK_VERSION}")
  stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$stages/$f"
  done > "$bin/kwok-stages.yaml.tmp"
  mv "$bin/kwok-stages.yaml.tmp" "$bin/kwok-stages.yaml"
fi

if ! have helm; then
  echo "building helm $HELM_VERSION" >&2
  GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi

if ! have_kube_score; then
  echo "building kube-score $KUBE_SCORE_VERSION" >&2
  rm -f "$bin/kube-score.version"
  GOBIN="$bin" go install -ldflags "-X main.version=${KUBE_SCORE_VERSION#v}" \
    "github.com/zegl/kube-score/cmd/kube-score@${KUBE_SCORE_VERSION}"
  echo "$KUBE_SCORE_VERSION" > "$bin/kube-score.version"
fi

echo "$bin"
