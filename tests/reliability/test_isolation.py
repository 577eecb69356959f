"""5. Isolation matrix.

Kubernetes side (one test): K bots of three tenants in two namespaces, each with its own
Secrets (a database DSN with a password, a webhook signing key) and the API-token Secret the
operator makes. Then:
- a SubjectAccessReview for every (bot ServiceAccount, bot) pair and every verb on the bot's
  WhatsAppBot, its status, its Lease and its Secrets: allowed exactly where the bot's own Role
  says (no Secret at all: the kubelet injects them), denied on everything of every other bot,
  in either namespace; a sample of the same
  requests made for real with each ServiceAccount's token;
- the bots' pods admitted in namespaces that enforce PodSecurity `restricted` (and a pod that
  breaks it refused there, so the enforcement is known to be on);
- no secret value anywhere it should not be: two worker processes run with those values in
  their environment (as the pod gets them), then the operator's log, the workers' output, their
  /metrics, every WhatsAppBot, every pod and every Event are searched for each value (and its
  base64 form). The Secrets themselves are searched as the positive control.

Database side: one PostgreSQL database shared by three tenants, migrated by the worker's own
migrations, rows written through each tenant's Database; hand-written SQL in one tenant's
session must see, change and delete none of the others' rows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.postgres import PostgresServer
from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.reliability import figures, sizes
from tests.reliability.pg import migrated_database, tenant_role
from tests.support.net import free_port
from wabot import naming
from wabot.spec import API_GROUP, API_VERSION, PLURAL

SECTION = "isolation"
REPO = Path(__file__).resolve().parents[2]
TENANTS = ("t-alpha", "t-beta", "t-gamma")
VERBS = ("get", "list", "watch", "patch", "update", "delete")


# --- the bots -----------------------------------------------------------------------------


@dataclass
class Bot:
    name: str
    ns: str
    tenant: str
    dsn: str
    password: str
    hook_key: str
    api_token: str = ""

    @property
    def sa(self) -> str:
        return naming.child_name(self.name)

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.ns}:{self.sa}"

    @property
    def secrets(self) -> list[str]:
        return [f"db-{self.name}", f"hook-{self.name}", naming.api_secret_name(self.name)]

    def spec(self) -> dict[str, Any]:
        return {"serverName": self.tenant, "storage": {"retainPolicy": "Delete"},
                "database": {"secretRef": {"name": f"db-{self.name}"}},
                "webhook": {"url": f"https://hooks.invalid/{self.name}",
                            "secretRef": {"name": f"hook-{self.name}"}}}


@pytest.fixture
def second_namespace(kube: Kube) -> Iterator[str]:
    """Torn down before the operators stop (requested after operator_factory), so the bots'
    finalizers are handled by a live operator."""
    name = f"t2-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    kube.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                 "pod-security.kubernetes.io/enforce-version=latest", "wabot.io/test=true")
    kube.kubectl("annotate", "namespace", name, f"{naming.ANNOTATION_TENANTS}={','.join(TENANTS)}")
    eventually(lambda: kube.kubectl("-n", name, "get", "serviceaccount", "default",
                                    check=False).returncode == 0, timeout=30,
               what="default ServiceAccount")
    yield name
    kube.kubectl("-n", name, "delete", "whatsappbots", "--all", "--wait=false", check=False)
    with contextlib.suppress(AssertionError):
        eventually(lambda: "No resources" in kube.kubectl(
            "-n", name, "get", "whatsappbots", check=False).stderr, timeout=30,
            what="bots gone")
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def make_bots(cluster: Cluster, ns2: str, postgres: PostgresServer) -> list[Bot]:
    k = sizes.ISOLATION_BOTS
    dbname = f"iso_{uuid.uuid4().hex[:8]}"
    owner = migrated_database(postgres, dbname)  # the migrate step, as the owner role
    bots = []
    for i in range(k):
        ns = cluster.ns if i < (2 * k + 2) // 3 else ns2
        password = f"PW{secrets.token_hex(12)}"
        role = f"iso_{uuid.uuid4().hex[:8]}"
        dsn = tenant_role(owner, TENANTS[i % len(TENANTS)], role=role, password=password)
        bot = Bot(f"iso{i:02d}", ns, TENANTS[i % len(TENANTS)], dsn, password,
                  f"HK{secrets.token_hex(16)}")
        for secret, value in ((f"db-{bot.name}", dsn), (f"hook-{bot.name}", bot.hook_key)):
            cluster.core.create_namespaced_secret(ns, client.V1Secret(
                metadata=client.V1ObjectMeta(name=secret, labels={
                    naming.LABEL_BOT_SECRET: "true", naming.LABEL_TENANT: bot.tenant}),
                string_data={"value": value}))
        cluster.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, ns, PLURAL,
            {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "WhatsAppBot",
             "metadata": {"name": bot.name}, "spec": bot.spec()})
        bots.append(bot)
    return bots


# --- RBAC -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    subject: Bot
    target: Bot
    group: str
    resource: str
    subresource: str
    name: str
    verb: str

    def expected(self) -> bool:
        if self.subject is not self.target:
            return False
        own = {("wabot.io", "whatsappbots", ""): {"get", "list", "watch"},
               ("wabot.io", "whatsappbots", "status"): {"get", "patch"},
               ("coordination.k8s.io", "leases", ""): {"get", "update", "patch"}}
        if self.resource == "secrets":
            return False  # the kubelet injects a bot's Secrets; its token reads none
        return self.verb in own.get((self.group, self.resource, self.subresource), set())


def checks_for(bots: list[Bot]) -> list[Check]:
    out = []
    for s in bots:
        for t in bots:
            targets = [("wabot.io", "whatsappbots", "", t.name),
                       ("wabot.io", "whatsappbots", "status", t.name),
                       ("coordination.k8s.io", "leases", "", naming.child_name(t.name))]
            targets += [("", "secrets", "", name) for name in t.secrets]
            for group, resource, sub, name in targets:
                for verb in VERBS:
                    out.append(Check(s, t, group, resource, sub, name, verb))
    return out


def review(authz: client.AuthorizationV1Api, c: Check) -> bool:
    body = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=c.subject.user,
        groups=["system:serviceaccounts", f"system:serviceaccounts:{c.subject.ns}",
                "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(
            namespace=c.target.ns, verb=c.verb, group=c.group, resource=c.resource,
            subresource=c.subresource or None, name=c.name)))
    return bool(authz.create_subject_access_review(body).status.allowed)


def token_client(admin: client.ApiClient, bot: Bot) -> tuple[client.ApiClient, str]:
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        bot.sa, bot.ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    cfg = client.Configuration()
    cfg.host = admin.configuration.host
    cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(cfg), token


def real_calls(api: client.ApiClient, t: Bot) -> dict[str, Callable[[], Any]]:
    core, coord = client.CoreV1Api(api), client.CoordinationV1Api(api)
    custom = client.CustomObjectsApi(api)
    return {
        "get db Secret": lambda: core.read_namespaced_secret(f"db-{t.name}", t.ns),
        "get API-token Secret": lambda: core.read_namespaced_secret(
            naming.api_secret_name(t.name), t.ns),
        "get Lease": lambda: coord.read_namespaced_lease(t.sa, t.ns),
        "patch status": lambda: custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, t.ns, PLURAL, t.name, {"status": {}},
            _content_type="application/merge-patch+json"),
        "delete WhatsAppBot": lambda: custom.delete_namespaced_custom_object(
            API_GROUP, API_VERSION, t.ns, PLURAL, t.name, dry_run="All"),
    }


def real_status(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as e:
        return int(e.status)
    return 200


# --- workers and the scan ---------------------------------------------------------------------


def kubeconfig_for(admin: client.ApiClient, bot: Bot, token: str, path: Path) -> Path:
    ca = path.with_suffix(".ca")
    shutil.copy(admin.configuration.ssl_ca_cert, ca)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": admin.configuration.host,
                                               "certificate-authority": str(ca)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u",
                                               "namespace": bot.ns}}],
        "current-context": "x"}))
    return path


def start_worker(bot: Bot, dsn: str, kubeconfig: Path,
                 tmp: Path) -> tuple[subprocess.Popen[str], int]:
    """The worker as the pod runs it: the operator's environment with the Secrets' values."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("BOT_ID", "SERVER_NAME", "ROLE", "KUBERNETES_SERVICE_HOST")}
    env.update({
        "ROLE": "worker", "BOT_ID": bot.name, "SERVER_NAME": bot.tenant,
        "WABOT_BOT_NAME": bot.name, "WABOT_NAMESPACE": bot.ns, "POD_NAME": bot.sa,
        "WABOT_LEASE_NAME": bot.sa, "AUTH_DIR": str(tmp / f"auth-{bot.name}"),
        "DATABASE_URL": dsn, "HTTP_PORT": str(port), "HTTP_HOST": "127.0.0.1",
        "WABOT_SPEC_SOURCE": "kubernetes", "WABOT_WEBHOOK_SECRET": bot.hook_key,
        "WABOT_API_TOKEN": bot.api_token, "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": str(REPO), "WABOT_SHUTDOWN_TIMEOUT_SECONDS": "10",
    })
    proc = subprocess.Popen([sys.executable, "-m", "botworker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, port


def http_text(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> str:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return str(r.read().decode(errors="replace"))
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.read().decode(errors='replace')}"
    except OSError as e:
        return f"{type(e).__name__}"


def needles(bots: list[Bot], extra: dict[str, str]) -> dict[str, str]:
    """Every secret value, plain and base64, by a label that does not reveal it."""
    out: dict[str, str] = dict(extra)
    for b in bots:
        for label, value in ((f"{b.name} DSN password", b.password), (f"{b.name} DSN", b.dsn),
                             (f"{b.name} webhook key", b.hook_key),
                             (f"{b.name} API token", b.api_token)):
            if value:
                out[label] = value
                out[label + " (base64)"] = base64.b64encode(value.encode()).decode()
    return out


def scan(sources: dict[str, str], secret_values: dict[str, str]) -> list[str]:
    return [f"{label} in {where}" for where, text in sources.items()
            for label, value in secret_values.items() if value in text]


def test_service_accounts_pod_security_and_secrets_are_isolated(
        kube: Kube, cluster: Cluster, operator_factory: Callable[..., OperatorProcess],
        second_namespace: str, postgres: PostgresServer, tmp_path: Path) -> None:
    figures.section(SECTION, "5. Isolation matrix")
    ns1, ns2 = cluster.ns, second_namespace
    op = operator_factory(namespace=f"{ns1},{ns2}").start()
    bots = make_bots(cluster, ns2, postgres)
    admin = cluster.api_client

    def converged() -> bool:
        for b in bots:
            pod = _read(lambda b=b: cluster.core.read_namespaced_pod(b.sa, b.ns))
            if pod is None or pod.status.phase != "Running":
                return False
            data = cluster.core.read_namespaced_secret(naming.api_secret_name(b.name),
                                                       b.ns).data or {}
            b.api_token = base64.b64decode(data.get(naming.API_TOKEN_KEY, "")).decode()
            if not b.api_token:
                return False
        return True

    eventually(converged, timeout=60 + 5 * len(bots), interval=1.0, what="bots running")
    figures.record(SECTION, "bots", f"{len(bots)} bots, {len(TENANTS)} tenants, 2 namespaces "
                   f"({sum(b.ns == ns1 for b in bots)} + {sum(b.ns == ns2 for b in bots)})")

    # --- SubjectAccessReviews ---------------------------------------------------------------
    authz = client.AuthorizationV1Api(admin)
    checks = checks_for(bots)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = list(pool.map(lambda c: review(authz, c), checks))
    sar_s = time.monotonic() - t0
    wrong = [(c.subject.name, c.verb, c.resource, c.subresource, c.target.name, c.name, a)
             for c, a in zip(checks, allowed, strict=True) if a != c.expected()]
    own = [(c, a) for c, a in zip(checks, allowed, strict=True) if c.subject is c.target]
    cross = [(c, a) for c, a in zip(checks, allowed, strict=True) if c.subject is not c.target]
    cross_ns = [(c, a) for c, a in cross if c.subject.ns != c.target.ns]
    own_allowed = Counter(f"{c.resource}{'/' + c.subresource if c.subresource else ''} {c.verb}"
                          for c, a in own if a)
    figures.record(SECTION, "SubjectAccessReviews", f"{len(checks)} ({len(bots)}x{len(bots)} "
                   f"pairs x WhatsAppBot, status, Lease, 3 Secrets x {'/'.join(VERBS)}) "
                   f"in {sar_s:.1f} s")
    figures.record(SECTION, "other bots' objects: denied",
                   f"{sum(1 for _, a in cross if not a)}/{len(cross)} "
                   f"(of which other namespace {sum(1 for _, a in cross_ns if not a)}"
                   f"/{len(cross_ns)})")
    figures.record(SECTION, "own objects: as the bot's Role says",
                   f"{sum(1 for c, a in own if a == c.expected())}/{len(own)}; allowed: "
                   + ", ".join(sorted({k for k in own_allowed})))
    figures.record(SECTION, "decisions different from the design", len(wrong))

    # --- the same, for real, with each ServiceAccount's token -------------------------------
    real: Counter[str] = Counter()
    real_wrong = []
    clients = {b.name: token_client(admin, b) for b in bots}
    for s in bots:
        api = clients[s.name][0]
        for t in bots:
            calls = real_calls(api, t)
            for what, call in calls.items():
                code = real_status(call)
                # Not even its own DSN's Secret: the kubelet injects it (issue 21).
                ok = {"get db Secret": False, "get API-token Secret": False, "get Lease": True,
                      "patch status": True, "delete WhatsAppBot": False}[what] and s is t
                real[f"{what} {'own' if s is t else 'other'} {code}"] += 1
                if (code == 200) != ok or (code not in (200, 403)):
                    real_wrong.append((s.name, what, t.name, code))
        if real_status(lambda api=api, s=s: client.CoreV1Api(api).list_namespaced_secret(
                s.ns)) != 403:
            real_wrong.append((s.name, "list Secrets", s.ns))
    figures.record(SECTION, "real requests with the bots' tokens", ", ".join(
        f"{k} x{n}" for k, n in sorted(real.items())))

    # --- PodSecurity restricted ---------------------------------------------------------------
    labels = {ns: (cluster.core.read_namespace(ns).metadata.labels or {}) for ns in (ns1, ns2)}
    enforced = all(v.get("pod-security.kubernetes.io/enforce") == "restricted"
                   for v in labels.values())
    pods = [p for ns in (ns1, ns2) for p in cluster.core.list_namespaced_pod(
        ns, label_selector=naming.LABEL_BOT).items]
    refused = {}
    for ns in (ns1, ns2):
        refused[ns] = real_status(lambda ns=ns: cluster.core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "not-restricted"},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1",
                                     "securityContext": {"privileged": True}}]}}))
    figures.record(SECTION, "bot pods admitted under PodSecurity restricted",
                   f"{len(pods)}/{len(bots)} (enforce=restricted on both namespaces: {enforced}; "
                   f"a privileged pod there: HTTP {sorted(set(refused.values()))})")

    # --- workers with the secrets in their environment, then the scan -------------------------
    dead_port = free_port()
    w0, w1 = bots[0], bots[-1]
    dead_dsn = w1.dsn.replace(f":{postgres.port}/", f":{dead_port}/")
    workers = [(w0, *start_worker(w0, w0.dsn, kubeconfig_for(
        admin, w0, clients[w0.name][1], tmp_path / "w0.kubeconfig"), tmp_path)),
               (w1, *start_worker(w1, dead_dsn, kubeconfig_for(
                   admin, w1, clients[w1.name][1], tmp_path / "w1.kubeconfig"), tmp_path))]
    outputs: dict[str, str] = {}
    try:
        for bot, _proc, _port in workers:
            eventually(lambda bot=bot: (cluster.bot(bot.name) if bot.ns == ns1 else
                                        cluster.custom.get_namespaced_custom_object(
                                            API_GROUP, API_VERSION, bot.ns, PLURAL, bot.name))
                       .get("status", {}).get("worker", {}).get("lastError"),
                       timeout=90, what=f"{bot.name}'s worker report")
        # The first worker's database works (its role checked with the password in its DSN);
        # the second one's does not (a dead port): both paths have logged by now.
        db_up = f'wabot_db_up{{bot="{w0.name}",server_name="{w0.tenant}"}} 1.0'
        metrics_url = f"http://127.0.0.1:{workers[0][2]}/metrics"
        eventually(lambda: db_up in http_text(metrics_url), timeout=90, interval=1.0,
                   what="the first worker's database")
        for bot, _proc, port in workers:
            base = f"http://127.0.0.1:{port}"
            outputs[f"{bot.name} /metrics"] = http_text(base + "/metrics")
            outputs[f"{bot.name} /readyz"] = http_text(base + "/readyz")
            # The send API with a wrong token and with the right one: neither may echo it.
            outputs[f"{bot.name} /v1/messages"] = http_text(
                base + "/v1/messages", {"Authorization": f"Bearer wrong-{bot.hook_key[:4]}",
                                        "Content-Type": "application/json"}, b"{}") + \
                http_text(base + "/v1/messages", {"Authorization": f"Bearer {bot.api_token}",
                                                  "Content-Type": "application/json"},
                          json.dumps({"to": "15550001111", "text": bot.hook_key}).encode())
    finally:
        for bot, proc, _port in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            outputs[f"{bot.name} worker stdout+stderr"] = out + err
    for k, v in outputs.items():
        print(f"--- {k} (tail) ---\n{v[-2000:]}")
    worker_lines = sum(v.count("\n") for k, v in outputs.items() if "worker" in k)

    op_logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("operator-*.log")}
    api = client.ApiClient()
    sources: dict[str, str] = {**{f"operator log {k}": v for k, v in op_logs.items()},
                               **outputs}
    for ns in (ns1, ns2):
        objs = cluster.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL)
        sources[f"WhatsAppBots in {ns}"] = json.dumps(objs)
        sources[f"Events in {ns}"] = json.dumps(api.sanitize_for_serialization(
            cluster.core.list_namespaced_event(ns)))
        sources[f"Pods in {ns}"] = json.dumps(api.sanitize_for_serialization(
            cluster.core.list_namespaced_pod(ns)))
    secret_values = needles(bots, {f"{w1.name} dead-port DSN": dead_dsn})
    hits = scan(sources, secret_values)
    # Positive control: the same search finds every value in the Secrets themselves (the
    # plain values in the decoded data, the whole values' base64 in .data as stored).
    stored = [s for ns in (ns1, ns2) for s in cluster.core.list_namespaced_secret(ns).items]
    raw = json.dumps([s.data for s in stored])
    decoded = json.dumps([{k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}
                          for s in stored])
    plain = {k: v for k, v in secret_values.items()
             if not k.endswith("(base64)") and "dead-port" not in k}
    whole_b64 = {k: v for k, v in secret_values.items() if k.endswith("(base64)")
                 and "password" not in k}  # a part's base64 is not a substring of the whole's
    found_in_secrets = {k for k, v in plain.items() if v in decoded} | \
        {k for k, v in whole_b64.items() if v in raw}
    statuses = [o for ns in (ns1, ns2) for o in json.loads(sources[f"WhatsAppBots in {ns}"])
                ["items"]]
    events = sum(len(json.loads(sources[f"Events in {ns}"])["items"]) for ns in (ns1, ns2))
    figures.record(SECTION, "secret values searched", f"{len(secret_values)} "
                   "(DSN, DSN password, webhook key, API token per bot; plain and base64)")
    figures.record(SECTION, "searched", f"{len(op_logs)} operator log(s) "
                   f"{sum(len(v) for v in op_logs.values()) // 1024} KiB, 2 worker processes "
                   f"({worker_lines} lines, /metrics, /readyz, /v1/messages), "
                   f"{len(statuses)} WhatsAppBots, {events} Events, {len(pods)} pods")
    figures.record(SECTION, "secret values found outside their Secrets", len(hits))
    figures.record(SECTION, "positive control: values found in the Secrets themselves",
                   f"{len(found_in_secrets)}/{len(plain) + len(whole_b64)}")

    assert wrong == [], wrong[:10]
    assert len(checks) == len(bots) ** 2 * 6 * len(VERBS)
    assert real_wrong == [], real_wrong[:10]
    assert enforced and len(pods) == len(bots)
    assert set(refused.values()) == {403}, refused
    assert hits == [], hits[:10]
    assert found_in_secrets == set(plain) | set(whole_b64)
    assert all("worker" in k or _nonempty(v) for k, v in outputs.items())
    assert op.healthy()


def _read(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _nonempty(text: str) -> bool:
    return bool(text.strip())
