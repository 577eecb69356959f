#!/usr/bin/env bash
# The web console on the local cluster scripts/up.sh started (its last step; README "Web
# console"): the gateway from this checkout with the console on, at http://127.0.0.1:8088/console/
# (WABOT_CONSOLE_PORT), a demo API key for tenant acme and a ServiceAccount a cluster user signs
# in with. Stopped by scripts/down.sh. Nothing secret is printed: the key stays in a file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
state="${WABOT_DEVCLUSTER_DIR:-/tmp/wabot-dev}"
kubectl="${KUBECTL:-kubectl}"
port="${WABOT_CONSOLE_PORT:-8088}"
keys_ns=wabot-demo-api-keys
mkdir -p "$state"
umask 077

"$kubectl" create namespace "$keys_ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
# Tenant acme's demo key, made once and kept in a file; the cluster holds only its hash.
[ -s "$state/acme-api-key" ] ||
  python3 -c 'import secrets; print("acme-" + secrets.token_urlsafe(24))' >"$state/acme-api-key"
digest="$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1]).read().strip().encode()).hexdigest())' "$state/acme-api-key")"
"$kubectl" -n "$keys_ns" create secret generic acme-demo-key --from-literal=tenant=acme \
  --from-literal=key-sha256="$digest" --dry-run=client -o yaml |
  "$kubectl" label --local -f - wabot.io/api-key=true -o yaml | "$kubectl" apply -f - >/dev/null
# A cluster user: may see and suspend the demo bots, nothing else.
"$kubectl" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ServiceAccount
metadata: {name: wabot-console-admin, namespace: wabot-demo}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: wabot-console-admin, namespace: wabot-demo}
rules:
  - {apiGroups: [wabot.io], resources: [whatsappbots], verbs: [get, list, watch, patch]}
  - {apiGroups: [""], resources: [events], verbs: [list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: wabot-console-admin, namespace: wabot-demo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: wabot-console-admin}
subjects: [{kind: ServiceAccount, name: wabot-console-admin, namespace: wabot-demo}]
EOF

[ -s "$state/console-secret" ] ||
  python3 -c 'import secrets; print(secrets.token_urlsafe(48))' >"$state/console-secret"
if [ -f "$state/gateway.pid" ] && kill -0 "$(cat "$state/gateway.pid")" 2>/dev/null; then
  echo "up: gateway already running (pid $(cat "$state/gateway.pid"))"
else
  WABOT_GATEWAY_HOST=127.0.0.1 WABOT_GATEWAY_PORT="$port" WABOT_GATEWAY_KEYS_NAMESPACE="$keys_ns" \
    WABOT_GATEWAY_CONSOLE=true WABOT_GATEWAY_CONSOLE_SECRET="$(cat "$state/console-secret")" \
    nohup python3 -m gateway >"$state/gateway.log" 2>&1 &
  echo $! >"$state/gateway.pid"
  for _ in $(seq 1 50); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/livez', timeout=1)" \
      2>/dev/null && break
    sleep 0.2
  done
  echo "up: gateway started (pid $!, log $state/gateway.log)"
fi
echo "up: web console at http://127.0.0.1:$port/console/"
echo "    tenant acme: sign in with the API key in $state/acme-api-key"
echo "    cluster user: sign in with the token of: kubectl -n wabot-demo create token wabot-console-admin"
