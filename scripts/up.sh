#!/usr/bin/env bash
# The main job on a fresh machine: install everything, start the local control plane with its
# real node (or use the cluster $KUBECONFIG names), build the worker image and import it into
# the node, install the WhatsAppBot CRD, run the operator, apply the sample bots (placed on the
# real node, where their workers really run) and show them with `kubectl get wab`.
# Then: kubectl logs -n wabot-demo wabot-support   (the worker's own log)
# Stop everything with: scripts/down.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
state="${WABOT_DEVCLUSTER_DIR:-/tmp/wabot-dev}"

bash scripts/setup.sh
tools="$(bash devcluster/build-tools.sh --check)"
kubectl="$tools/kubectl"

worker_image=localhost/wabot-worker:dev
if [ -z "${KUBECONFIG:-}" ]; then
  eval "$(python3 -m devcluster up --dir "$state")"
  echo "up: local control plane and real node running; export KUBECONFIG=$KUBECONFIG"
  # The worker image, built by podman (once per change) and imported into the real node.
  bash images/build.sh worker dev >"$state/image-build.log" 2>&1 \
    || { tail -n 30 "$state/image-build.log" >&2; exit 1; }
  python3 -m devcluster load-image "$worker_image" --dir "$state"
else
  echo "up: using the cluster in KUBECONFIG=$KUBECONFIG"
fi
# The sample bots go to the real node when the cluster has one (label and taint
# wabot.io/real-node, local volumes of its StorageClass); elsewhere to whatever node the
# scheduler picks.
real_node="$("$kubectl" get nodes -l wabot.io/real-node=true -o name)"

"$kubectl" apply --server-side --force-conflicts -f crds/
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/
"$kubectl" get crd whatsappbots.wabot.io -o custom-columns=CRD:.metadata.name,VERSIONS:.spec.versions[*].name,SCOPE:.spec.scope

# The operator, run from this checkout against the cluster (the Helm chart is the way to run
# it inside a cluster: see the README). Its log goes to $state/operator.log.
mkdir -p "$state"
if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "up: operator already running (pid $(cat "$state/operator.pid"))"
else
  placement_env=()
  if [ -n "$real_node" ]; then
    placement_env=(WABOT_OPERATOR_WORKER_IMAGE="$worker_image"
                   WABOT_OPERATOR_ALLOWED_TOLERATIONS=wabot.io/real-node
                   WABOT_OPERATOR_ALLOWED_NODE_SELECTOR_KEYS=wabot.io/real-node,kubernetes.io/hostname)
  fi
  env WABOT_OPERATOR_STANDALONE=true "${placement_env[@]}" \
    nohup python3 -m wabot_operator >"$state/operator.log" 2>&1 &
  echo $! > "$state/operator.pid"
  echo "up: operator started (pid $!, log $state/operator.log)"
fi

"$kubectl" create namespace wabot-demo --dry-run=client -o yaml | "$kubectl" apply -f -
# The admin's word on which tenants this namespace hosts (README "Security model").
"$kubectl" annotate --overwrite namespace wabot-demo wabot.io/tenants=acme,globex
for f in samples/*-bot.yaml; do
  python3 - "$f" "$real_node" <<'EOF' | "$kubectl" apply -n wabot-demo -f -
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if sys.argv[2] and d.get("kind") == "WhatsAppBot":
        spec = d.setdefault("spec", {})
        spec["nodeSelector"] = {"wabot.io/real-node": "true"}
        spec["tolerations"] = [{"key": "wabot.io/real-node", "operator": "Exists",
                                "effect": "NoSchedule"}]
        spec.setdefault("storage", {})["storageClassName"] = "wabot-real-node"
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
EOF
done
bots="$(ls samples/*-bot.yaml | wc -l)"
echo "up: waiting until each of the $bots sample bots has a phase..."
for _ in $(seq 1 120); do
  phases="$("$kubectl" get wab -n wabot-demo -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}')"
  if [ "$(grep -c . <<<"$phases")" -ge "$bots" ]; then
    break
  fi
  sleep 1
done
"$kubectl" get wab -n wabot-demo
"$kubectl" get pods,pvc -n wabot-demo -o wide
# The web console (gateway/console) on this cluster; prints its URL and how to sign in.
KUBECTL="$kubectl" bash scripts/console-up.sh
