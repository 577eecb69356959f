#!/usr/bin/env bash
# Regenerates the WhatsAppBot CRD from the spec model (python -m wabot.crd write: crds/ and the
# chart's copy), then copies the other CRDs (crds/*.yaml) and per-bot templates
# (operator/bot-templates/*.yaml) into the Helm chart, which cannot read files outside its own
# directory. tests/packaging checks that the copies are byte-identical, tests/contract that the CRD
# is the generated one; run this after changing wabot/spec.py or either source and commit the
# result.
#
#   images/sync-chart-crds.sh          # copy
#   images/sync-chart-crds.sh --check  # only report differences (exit 1 if any)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$REPO/charts/wabot-operator"
check=false
[[ "${1:-}" == "--check" ]] && check=true
status=0

sync_dir() {
    local src="$1" dst="$2" f name
    mkdir -p "$dst"
    for f in "$src"/*.yaml; do
        name="$(basename "$f")"
        if ! cmp -s "$f" "$dst/$name"; then
            if $check; then echo "differs: ${dst#"$REPO"/}/$name" >&2; status=1
            else cp "$f" "$dst/$name"; echo "updated ${dst#"$REPO"/}/$name" >&2; fi
        fi
    done
    for f in "$dst"/*.yaml; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f")"
        if [[ ! -e "$src/$name" ]]; then
            if $check; then echo "stale: ${dst#"$REPO"/}/$name" >&2; status=1
            else rm "$f"; echo "removed ${dst#"$REPO"/}/$name" >&2; fi
        fi
    done
}

if $check; then
    (cd "$REPO" && "${PYTHON:-python3}" -m wabot.crd --check >/dev/null) || status=1
else
    (cd "$REPO" && "${PYTHON:-python3}" -m wabot.crd write)
fi
sync_dir "$REPO/crds" "$CHART/crds"
sync_dir "$REPO/operator/bot-templates" "$CHART/files/bot-templates"
exit "$status"
