#!/usr/bin/env bash
# Builds wabot's container images with podman, on machines without Docker or a registry.
#
#   images/build.sh base               # localhost/wabot-base:bookworm, only if it is missing
#   images/build.sh base --force       # rebuild it anyway
#   images/build.sh base --relock      # rebuild it and rewrite images/base-packages.lock
#   images/build.sh worker [TAG]       # localhost/wabot-worker:TAG   (default TAG: dev)
#   images/build.sh operator [TAG]     # localhost/wabot-operator:TAG
#   images/build.sh all [TAG]          # base (if missing), worker, operator
#
# The base is Debian bookworm minbase (debootstrap) + Debian's python3 (3.11) + python3-venv,
# imported with `podman import`: the stand-in for python:3.11-slim-bookworm where no image can
# be pulled. The Dockerfiles are standard and build on either (they refer to `python3` and make
# their venv with `python3 -m venv`). On a machine with a registry, just use
#   docker build -f Dockerfile.worker -t wabot-worker .
#
# Pinned: debootstrap verifies the archive's signatures (debian-archive-keyring), and the base
# must hold exactly the packages and versions of images/base-packages.lock, or the build stops
# and shows the difference (a Debian point release or security update changed something: review
# it, then `images/build.sh base --relock` and commit the lock). The images are then built FROM
# the base's image ID, not its tag, so both stages of a build use the very same base.
#
# Environment:
#   BASE_IMAGE     base for both images          (default localhost/wabot-base:bookworm)
#   DEBIAN_MIRROR  mirror for debootstrap         (default http://deb.debian.org/debian)
#   HOST_CA        CA bundle mounted for pip      (default /etc/ssl/certs/ca-certificates.crt)
#   PODMAN_RUNTIME OCI runtime                    (default /usr/sbin/runc; crun fails on hybrid
#                                                  cgroups hosts)
# The podman flags below are the ones that work on the project's machines
# (see ../shared/notes/environment.md): runc, explicit ulimits, host network, the host CA.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-localhost/wabot-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
PODMAN_RUNTIME="${PODMAN_RUNTIME:-/usr/sbin/runc}"
# Packages of the base: what python:3.11-slim-bookworm has that matters to us.
BASE_PACKAGES="python3,python3-venv,ca-certificates,netbase,tzdata"

log() { printf '>>> %s\n' "$*" >&2; }

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "images/build.sh: $1 is missing (apt-get install -y podman runc debootstrap)" >&2
        exit 1
    }
}

# What Debian's slim images leave out too: docs (but not the copyright files), man pages,
# translations, package caches; plus the dpkg rule that keeps later apt installs slim.
slim_rootfs() {
    local root="$1"
    # Never let an empty or wrong argument turn this into a cleanup of the host.
    if [[ -z "$root" || "$root" == / || ! -x "$root/usr/bin/dpkg" ]]; then
        echo "slim_rootfs: refusing to touch '$root'" >&2
        exit 1
    fi
    printf '%s\n' \
        'path-exclude /usr/share/doc/*' \
        'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/groff/*' \
        'path-exclude /usr/share/lintian/*' \
        'path-exclude /usr/share/locale/*' \
        >"$root/etc/dpkg/dpkg.cfg.d/wabot-slim"
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/var/log/*.log \
        "$root"/var/cache/debconf/*-old
}

LOCK="$REPO/images/base-packages.lock"

# The base's packages as name=version lines, the lock's format.
package_list() {
    chroot "$1" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort
}

check_lock() {
    local root="$1" relock="$2" actual
    actual="$(package_list "$root")"
    if [[ "$relock" == true ]]; then
        {
            echo "# Packages of the image base (images/build.sh base): Debian bookworm minbase +"
            echo "# $BASE_PACKAGES, as debootstrap installed them from the signed archive."
            echo "# Debian $(cat "$root/etc/debian_version"). Rewritten only by images/build.sh base --relock."
            printf '%s\n' "$actual"
        } >"$LOCK"
        log "wrote images/base-packages.lock ($(grep -vc '^#' "$LOCK") packages)"
        return 0
    fi
    if ! diff -u <(grep -v '^#' "$LOCK") <(printf '%s\n' "$actual") >"$root.diff"; then
        echo "images/build.sh: the base differs from images/base-packages.lock:" >&2
        cat "$root.diff" >&2
        echo "Review the change, then: images/build.sh base --relock (and commit the lock)." >&2
        rm -f "$root.diff"
        return 1
    fi
    rm -f "$root.diff"
}

build_base() {
    local force="${1:-}" relock=false
    [[ "$force" == "--relock" ]] && { relock=true; force=--force; }
    if [[ "$force" != "--force" ]] && podman image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE exists (images/build.sh base --force rebuilds it)"
        return 0
    fi
    need debootstrap
    local rootfs
    rootfs="$(mktemp -d /tmp/wabot-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' RETURN
    log "debootstrap bookworm minbase + $BASE_PACKAGES into $rootfs"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$rootfs" "$DEBIAN_MIRROR" \
        >"$rootfs.log" 2>&1 || {
        echo "debootstrap failed; last lines of $rootfs.log:" >&2
        tail -n 30 "$rootfs.log" >&2
        exit 1
    }
    rm -f "$rootfs.log"
    check_lock "$rootfs" "$relock" || return 1
    slim_rootfs "$rootfs"
    log "podman import -> $BASE_IMAGE"
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        - "$BASE_IMAGE" >/dev/null
}

build_image() {
    local role="$1" tag="${2:-dev}"
    local image="localhost/wabot-$role:$tag"
    [[ -f "$HOST_CA" ]] || { echo "images/build.sh: no CA bundle at $HOST_CA" >&2; exit 1; }
    local previous
    previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    log "podman build -f Dockerfile.$role -t $image (base $BASE_IMAGE)"
    podman build \
        --runtime "$PODMAN_RUNTIME" \
        --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        --network=host \
        -v "$HOST_CA:/host-ca.crt:ro" \
        --build-arg PIP_CERT=/host-ca.crt \
        --build-arg "BASE_IMAGE=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")" \
        --build-arg "VERSION=$(version)" \
        --build-arg "REVISION=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        -f "$REPO/Dockerfile.$role" -t "$image" "$REPO"
    # The image this tag named before is now untagged: remove it (only it, only if unused).
    if [[ -n "$previous" && "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    podman image inspect --format "{{.Size}}" "$image" \
        | awk -v img="$image" '{ printf ">>> %s: %.1f MB\n", img, $1 / 1000000 }' >&2
}

version() {
    python3 - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])
EOF
}

need podman
case "${1:-all}" in
    base) build_base "${2:-}" ;;
    worker | operator) build_base; build_image "$1" "${2:-dev}" ;;
    all) build_base; build_image worker "${2:-dev}"; build_image operator "${2:-dev}" ;;
    *) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
