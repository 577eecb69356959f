#!/usr/bin/env bash
# The main job on a fresh machine: install everything, start the local control plane
# (or use the cluster $KUBECONFIG names), install the WhatsAppBot CRD, run the operator,
# apply the sample bots and show them with `kubectl get wab`.
# Stop everything with: scripts/down.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
state="${WABOT_DEVCLUSTER_DIR:-/tmp/wabot-dev}"

bash scripts/setup.sh
tools="$(bash devcluster/build-tools.sh --check)"
kubectl="$tools/kubectl"

if [ -z "${KUBECONFIG:-}" ]; then
  eval "$(python3 -m devcluster up --dir "$state")"
  echo "up: local control plane running; export KUBECONFIG=$KUBECONFIG"
else
  echo "up: using the cluster in KUBECONFIG=$KUBECONFIG"
fi

"$kubectl" apply --server-side --force-conflicts -f crds/
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/
"$kubectl" get crd whatsappbots.wabot.io -o custom-columns=CRD:.metadata.name,VERSIONS:.spec.versions[*].name,SCOPE:.spec.scope

# The operator, run from this checkout against the cluster (the Helm chart is the way to run
# it inside a cluster: see the README). Its log goes to $state/operator.log.
mkdir -p "$state"
if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "up: operator already running (pid $(cat "$state/operator.pid"))"
else
  WABOT_OPERATOR_STANDALONE=true nohup python3 -m wabot_operator >"$state/operator.log" 2>&1 &
  echo $! > "$state/operator.pid"
  echo "up: operator started (pid $!, log $state/operator.log)"
fi

"$kubectl" create namespace wabot-demo --dry-run=client -o yaml | "$kubectl" apply -f -
# The admin's word on which tenants this namespace hosts (README "Security model").
"$kubectl" annotate --overwrite namespace wabot-demo wabot.io/tenants=acme,globex
for f in samples/*-bot.yaml; do "$kubectl" apply -n wabot-demo -f "$f"; done
echo "up: waiting for the sample bots' pods to run on the simulated nodes..."
for _ in $(seq 1 60); do
  phases="$("$kubectl" get wab -n wabot-demo -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}')"
  if [ -n "$phases" ] && ! grep -qvE '^(Connecting|Connected|Pairing|Suspended)$' <<<"$phases"; then
    break
  fi
  sleep 1
done
"$kubectl" get wab -n wabot-demo
"$kubectl" get pods,pvc -n wabot-demo
# The web console (gateway/console) on this cluster; prints its URL and how to sign in.
KUBECTL="$kubectl" bash scripts/console-up.sh
