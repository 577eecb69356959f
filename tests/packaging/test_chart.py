"""The Helm chart, offline: lint, what it renders for the values a user sets, and what it must
never render (wildcard RBAC, a root or writable container, two acting operators)."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

from tests.packaging.conftest import (
    ALL_VALUES,
    CHART,
    REPO,
    find,
    helm,
    render,
    template_args,
)

BOT_TEMPLATES = REPO / "operator" / "bot-templates"  # what the operator renders per bot
OPERATOR = "wabot-wabot-operator"  # the operator's Deployment (the gateway has its own)
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- lint and sync ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["defaults", "everything-enabled"])
def test_helm_lint_is_clean(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        args += ["-f", str(values)]
    out = helm(*args, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(("source", "copy"), [
    (REPO / "crds", CHART / "crds"),
    (BOT_TEMPLATES, CHART / "files" / "bot-templates"),
], ids=["crds", "bot-templates"])
def test_chart_copies_are_byte_identical_to_the_repo(source: Path, copy: Path) -> None:
    fix = "run images/sync-chart-crds.sh and commit the result"
    src = {p.name: p.read_bytes() for p in sorted(source.glob("*.yaml"))}
    dst = {p.name: p.read_bytes() for p in sorted(copy.glob("*.yaml"))}
    assert src, f"nothing in {source}"
    assert sorted(dst) == sorted(src), (
        f"{copy} has {sorted(dst)}, {source} has {sorted(src)}: {fix}")
    for name, content in src.items():
        assert dst[name] == content, f"{copy.relative_to(REPO)}/{name} differs: {fix}"


def test_sync_script_check_mode_agrees() -> None:
    out = subprocess.run(["bash", str(REPO / "images" / "sync-chart-crds.sh"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


# --- what is rendered ------------------------------------------------------------------------


# The tenant-boundary admission policy has its own tests (tests/security); left out here.
ADMISSION = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_defaults_render_only_the_operator_its_rbac_and_network_policies() -> None:
    kinds = sorted(o["kind"] for o in render() if o["kind"] not in ADMISSION)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
                            "RoleBinding", "Service", "Deployment", "NetworkPolicy",
                            "NetworkPolicy"])


@pytest.mark.parametrize(("setting", "kind"), [
    ("serviceMonitor.enabled", "ServiceMonitor"),
    ("podMonitor.enabled", "PodMonitor"),
    ("prometheusRule.enabled", "PrometheusRule"),
    ("dashboards.enabled", "ConfigMap"),
    ("podDisruptionBudget.enabled", "PodDisruptionBudget"),
    ("bots.templates.enabled", "ConfigMap"),
    ("database.migrate.enabled", "Job"),
])
def test_every_optional_object_is_behind_its_value(setting: str, kind: str) -> None:
    assert not [o for o in render() if o["kind"] == kind]
    assert [o for o in render(sets={setting: "true"}) if o["kind"] == kind]


@pytest.mark.parametrize("setting", ["rbac.create", "serviceAccount.create", "service.enabled",
                                     "networkPolicy.enabled"])
def test_default_objects_can_be_turned_off(setting: str) -> None:
    sets = {setting: "false"}
    if setting == "serviceAccount.create":
        sets["serviceAccount.name"] = "existing-sa"
    objects = render(sets=sets)
    gone = {"rbac.create": {"ClusterRole", "ClusterRoleBinding", "RoleBinding"},
            "serviceAccount.create": {"ServiceAccount"}, "service.enabled": {"Service"},
            "networkPolicy.enabled": {"NetworkPolicy"}}[setting]
    assert not [o for o in objects if o["kind"] in gone]
    if setting == "serviceAccount.create":
        spec = find(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "existing-sa"


def test_every_object_carries_the_standard_labels() -> None:
    for obj in render(ALL_VALUES):
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "wabot"


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["defaults", "everything-enabled"])
def test_operator_pod_is_hardened(values: Path | None) -> None:
    objects = render(*([values] if values else []))
    pod = find(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["resources"]["requests"]["ephemeral-storage"]
        assert c["resources"]["limits"]["ephemeral-storage"]
        for probe in ("livenessProbe", "startupProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        # Ready when its metrics port answers, alive while kopf's loop is: not one probe for
        # both (a restart is not what a pod that cannot serve needs).
        assert c["readinessProbe"]["tcpSocket"] == {"port": "metrics"}
        # The root filesystem is read-only: /tmp is the only writable path it gets.
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_migrate_job_runs_as_the_owner_role_before_install_and_upgrade() -> None:
    """The migrate step: the owner's DSN from its Secret, hardened like the operator, no
    ServiceAccount token, a Helm hook (bots never migrate PostgreSQL themselves)."""
    objects = render(sets={"database.migrate.enabled": "true",
                           "database.migrate.secret": "pg-owner:dsn",
                           "bots.databaseSecret": "wabot-db:{serverName}"})
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["command"] == ["python3", "-m", "botworker.data.migrate", "upgrade"]
    assert c["env"] == [{"name": "WABOT_MIGRATE_URL", "valueFrom": {"secretKeyRef": {
        "name": "pg-owner", "key": "dsn"}}}]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["image"].startswith("wabot-worker:")
    env = {e["name"]: e.get("value") for e in find(objects, "Deployment", OPERATOR)["spec"]
           ["template"]["spec"]["containers"][0]["env"]}
    assert env["WABOT_OPERATOR_DATABASE_SECRET"] == "wabot-db:{serverName}"


# --- peering ---------------------------------------------------------------------------------


def test_one_replica_runs_standalone_and_never_overlaps() -> None:
    deployment = find(render(), "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert env_of(deployment)["WABOT_OPERATOR_STANDALONE"] == "true"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "command" not in deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("sets", [{"replicaCount": "3"},
                                  {"replicaCount": "1", "operator.peering": "true"}])
def test_peering_replicas_never_run_standalone(sets: dict[str, str]) -> None:
    deployment = find(render(sets=sets), "Deployment", OPERATOR)
    env = env_of(deployment)
    assert env["WABOT_OPERATOR_STANDALONE"] == "false"
    assert env["WABOT_OPERATOR_PEERING_NAME"] == "wabot"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_several_standalone_replicas_are_refused() -> None:
    out = helm(*template_args(sets={"replicaCount": "2", "operator.peering": "false"}),
               check=False)
    assert out.returncode != 0
    assert "would run several operators at once" in out.stderr


def test_peering_replicas_get_distinct_priorities() -> None:
    """kopf freezes all replicas that share a priority. The chart sets none, so each replica
    takes the operator's own per-process default: check that default differs between two
    processes started from the very same Deployment environment."""
    from wabot_operator import config as opconfig

    deployment = find(render(sets={"replicaCount": "2"}), "Deployment", OPERATOR)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container and "args" not in container
    env = {k: v for k, v in env_of(deployment).items() if isinstance(v, str)}
    assert opconfig.ENV_PREFIX + "PRIORITY" not in env
    env[opconfig.ENV_PREFIX + "TEMPLATES_DIR"] = str(CHART / "files" / "bot-templates")
    priorities = {opconfig.OperatorConfig.from_env(env).priority for _ in range(5)}
    assert len(priorities) == 5


# --- the operator's environment --------------------------------------------------------------


def test_chart_env_is_what_the_operator_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Feed the rendered environment to the operator's own config loader and check each value
    lands where the user meant it."""
    from wabot_operator import config as opconfig

    objects = render(ALL_VALUES, sets={"watchNamespaces": "{team-a,team-b}"})
    env = {k: v for k, v in env_of(find(objects, "Deployment", OPERATOR)).items()
           if isinstance(v, str)}
    chart_names = {k.removeprefix(opconfig.ENV_PREFIX) for k in env
                   if k.startswith(opconfig.ENV_PREFIX)}
    read_by_operator = set(opconfig._FIELD_TO_ENV.values())
    unknown = chart_names - read_by_operator
    assert not unknown, f"the chart sets {sorted(unknown)}, which the operator never reads"

    # The templates dir is a ConfigMap mount in the pod; here, the chart's copy of them.
    env[opconfig.ENV_PREFIX + "TEMPLATES_DIR"] = str(CHART / "files" / "bot-templates")
    cfg = opconfig.OperatorConfig.from_env(env)
    assert cfg.namespaces == ("team-a", "team-b")
    assert cfg.worker_image == ("registry.example.com/wabot/wabot-worker@sha256:" + "0" * 64)
    assert cfg.database_secret is not None
    assert (cfg.database_secret.name, cfg.database_secret.key) == ("wabot-db", "dsn")
    assert cfg.standalone is False
    assert cfg.peering_name == "wabot"
    assert (cfg.health_port, cfg.metrics_port) == (8080, 9090)
    assert cfg.log_level == "DEBUG"
    assert cfg.log_format == "json"
    # bots.resources overlays the built-in defaults key by key; bots.storage sets the PVC's.
    assert cfg.default_resources.requests.cpu == "20m"
    assert cfg.default_resources.requests.memory == "96Mi"
    assert cfg.default_resources.limits.memory == "256Mi"
    assert cfg.default_resources.limits.cpu == "500m"
    assert (cfg.default_storage_size, cfg.default_storage_class) == ("512Mi", "standard")
    # policy.*: the admin's allow-lists and the bots' webhook egress exceptions.
    policy = cfg.bot_policy()
    assert policy.images == ("registry.example.com/wabot/",)
    assert policy.priority_classes == ("wabot-bots",)
    assert policy.toleration_keys == ("dedicated",)
    assert policy.node_selector_keys == ("kubernetes.io/arch", "pool")
    assert policy.reserved_secrets == ("wabot-db",)
    assert dict(cfg.worker_env()) == {"WABOT_WEBHOOK_ALLOW_CIDRS": "10.20.0.0/16",
                                      "WABOT_WEBHOOK_ALLOW_HOSTS": "hooks.internal.example",
                                      "WABOT_WEBHOOK_DENY_CIDRS": "10.20.99.0/24"}

    clusterwide = opconfig.OperatorConfig.from_env(
        {k: v for k, v in env_of(find(render(sets={"clusterWide": "true"}), "Deployment",
                                      OPERATOR)).items()
         if isinstance(v, str) and k != opconfig.ENV_PREFIX + "TEMPLATES_DIR"}
        | {opconfig.ENV_PREFIX + "TEMPLATES_DIR": str(CHART / "files" / "bot-templates")})
    assert clusterwide.clusterwide
    defaults = opconfig.OperatorConfig.from_env(
        {k: v for k, v in env_of(find(render(), "Deployment", OPERATOR)).items()
         if isinstance(v, str) and k != opconfig.ENV_PREFIX + "TEMPLATES_DIR"}
        | {opconfig.ENV_PREFIX + "TEMPLATES_DIR": str(CHART / "files" / "bot-templates")})
    assert not defaults.clusterwide and defaults.namespaces == ("wabot-system",)
    assert defaults.bot_policy().images == ("wabot-worker",)  # the worker image's own
    assert defaults.worker_env() == ()
    assert defaults.standalone is True
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert defaults.worker_image == f"wabot-worker:{app_version}"


def test_bot_templates_override_replaces_only_the_given_file() -> None:
    objects = render(ALL_VALUES)
    cm = find(objects, "ConfigMap", "wabot-wabot-operator-bot-templates")
    shipped = {p.name: p.read_text() for p in (CHART / "files" / "bot-templates").glob("*.yaml")}
    assert sorted(cm["data"]) == sorted(shipped)
    assert "example.com/team: bots" in cm["data"]["lease.yaml"]
    for name in shipped.keys() - {"lease.yaml"}:
        assert cm["data"][name] == shipped[name].rstrip("\n")
    deployment = find(objects, "Deployment", OPERATOR)
    assert env_of(deployment)["WABOT_OPERATOR_TEMPLATES_DIR"] == "/etc/wabot/bot-templates"
    assert "checksum/bot-templates" in deployment["spec"]["template"]["metadata"]["annotations"]

    out = helm(*template_args(sets={"bots.templates.enabled": "true",
                                    "bots.templates.files.deployment\\.yaml": "x"}),
               check=False)
    assert out.returncode != 0 and "not one of the operator's templates" in out.stderr


# --- RBAC ------------------------------------------------------------------------------------


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]


def _grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and verb in r.get("verbs", []) and not r.get("resourceNames") for r in rules)


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["defaults", "everything-enabled"])
def test_rbac_has_no_wildcards_or_escalation_verbs(values: Path | None) -> None:
    objects = [o for o in render(*([values] if values else []))
               if not o["metadata"]["name"].endswith("-gateway-keys")]  # see the gateway test
    for rule in _rules(objects):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        if "secrets" in rule.get("resources", []) and not rule.get("resourceNames"):
            # get (what a bot's Role grants) and create (each bot's API-token Secret): never
            # list/watch (every Secret's content), update, patch or delete.
            assert set(rule["verbs"]) <= {"get", "create"}, rule


def test_operator_holds_everything_it_grants_a_bot() -> None:
    """Kubernetes lets the operator create a bot's Role only if it holds every permission the
    Role grants (it has no `escalate`). Check against the real template."""
    rules = _rules(render())
    text = Template((BOT_TEMPLATES / "role.yaml").read_text()).safe_substitute(
        childName="wabot-b", bot="b", leaseName="wabot-b", namespace="ns", serverName="s")
    bot_rules = yaml.safe_load(text)["rules"] + [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    for rule in bot_rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert _grants(rules, group, resource, verb), (group, resource, verb)


@pytest.mark.parametrize(("group", "resource", "verbs"), [
    ("wabot.io", "whatsappbots", ["get", "list", "watch", "patch"]),
    ("wabot.io", "whatsappbots/status", ["get", "patch"]),
    ("wabot.io", "whatsappbots/finalizers", ["update"]),
    ("", "pods", ["get", "list", "watch", "create", "patch", "delete"]),
    ("", "persistentvolumeclaims", ["get", "list", "create", "patch", "delete"]),
    ("", "serviceaccounts", ["get", "list", "create", "patch", "delete"]),
    ("rbac.authorization.k8s.io", "roles", ["get", "list", "create", "patch", "delete"]),
    ("rbac.authorization.k8s.io", "rolebindings", ["get", "list", "create", "patch", "delete"]),
    ("coordination.k8s.io", "leases", ["get", "list", "create", "update", "patch", "delete"]),
    ("", "events", ["create"]),
    ("", "namespaces", ["list", "watch"]),
])
def test_operator_can_do_its_job(group: str, resource: str, verbs: list[str]) -> None:
    rules = _rules(render())
    for verb in verbs:
        assert _grants(rules, group, resource, verb), (group, resource, verb)


def test_clusterwide_peering_uses_cluster_peering_objects() -> None:
    rules = _rules(render(sets={"replicaCount": "2", "clusterWide": "true"}))
    assert _grants(rules, "kopf.dev", "clusterkopfpeerings", "patch")
    assert not _grants(rules, "kopf.dev", "kopfpeerings", "patch")
    assert not _grants(_rules(render(sets={"clusterWide": "true"})), "kopf.dev",
                       "clusterkopfpeerings", "patch")
    # Namespaced (the default): the peering objects live in the watched namespaces.
    rules = _rules(render(sets={"replicaCount": "2"}))
    assert _grants(rules, "kopf.dev", "kopfpeerings", "patch")
    assert not _grants(rules, "kopf.dev", "clusterkopfpeerings", "patch")


def _namespace_get(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for o in objects if o["kind"] == "ClusterRole" for r in o["rules"]
            if "namespaces" in r["resources"] and "get" in r["verbs"]]


def test_default_scope_is_the_release_namespace_only() -> None:
    """Finding 8: the default install managed (read Secrets, created pods in) every namespace.
    Now the operator's namespaced rules are bound in the release namespace only, and it may get
    that one Namespace object (its wabot.io/tenants annotation), no other."""
    objects = render(namespace="wabot-system")
    bots_bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
                     and o["roleRef"]["name"] == "wabot-wabot-operator-bots"]
    assert [(b["kind"], b["metadata"]["namespace"]) for b in bots_bindings] == [
        ("RoleBinding", "wabot-system")]
    assert env_of(find(objects, "Deployment", OPERATOR))[
        "WABOT_OPERATOR_NAMESPACES"] == "wabot-system"
    assert _namespace_get(objects) == [{"apiGroups": [""], "resources": ["namespaces"],
                                        "verbs": ["get"], "resourceNames": ["wabot-system"]}]
    listed = render(sets={"watchNamespaces": "{team-a,team-b}"})
    assert _namespace_get(listed)[0]["resourceNames"] == ["team-a", "team-b"]
    # Secrets and pods are granted through the bound ClusterRole only, never cluster-wide.
    cluster_roles = {b["roleRef"]["name"] for b in objects if b["kind"] == "ClusterRoleBinding"}
    for role in (o for o in objects if o["kind"] == "ClusterRole"
                 and o["metadata"]["name"] in cluster_roles):
        assert not [r for r in role["rules"] if {"secrets", "pods"} & set(r["resources"])], role


def test_cluster_wide_only_when_asked_for() -> None:
    objects = render(sets={"clusterWide": "true"})
    binding = find(objects, "ClusterRoleBinding", "wabot-wabot-operator-bots")
    assert binding["roleRef"]["name"] == "wabot-wabot-operator-bots"
    assert not [o for o in objects if o["kind"] == "RoleBinding"]
    assert env_of(find(objects, "Deployment", OPERATOR))["WABOT_OPERATOR_NAMESPACES"] == "*"
    assert _namespace_get(objects) == [{"apiGroups": [""], "resources": ["namespaces"],
                                        "verbs": ["get"]}]
    out = helm(*template_args(sets={"clusterWide": "true", "watchNamespaces": "{team-a}"}),
               check=False)
    assert out.returncode != 0 and "clusterWide=true and watchNamespaces are exclusive" in (
        out.stderr)


def test_watch_namespaces_bind_the_bot_rules_only_there() -> None:
    objects = render(ALL_VALUES, sets={"watchNamespaces": "{team-a,team-b}"})
    bindings = [o for o in objects if o["kind"] == "RoleBinding"
                and o["roleRef"]["name"] == "wabot-wabot-operator-bots"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["roleRef"]["name"] == "wabot-wabot-operator-bots" for b in bindings)
    cluster_bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert [b["roleRef"]["name"] for b in cluster_bindings] == ["wabot-wabot-operator"]
    # Namespaced peering objects, in the namespaces bound above.
    assert _grants(_rules(objects), "kopf.dev", "kopfpeerings", "create")
    env = env_of(find(objects, "Deployment", OPERATOR))
    assert env["WABOT_OPERATOR_NAMESPACES"] == "team-a,team-b"
    pod_monitor = find(objects, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


# --- monitoring objects ----------------------------------------------------------------------


def test_monitors_select_what_exists() -> None:
    objects = render(ALL_VALUES)
    service = find(objects, "Service", OPERATOR)
    monitor = find(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in [p["name"] for p in service["spec"]["ports"]]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    pod_monitor = find(objects, "PodMonitor")
    pod_template = yaml.safe_load(Template(
        (BOT_TEMPLATES / "pod.yaml").read_text()).safe_substitute(
            childName="wabot-b", image="x", pvcName="p"))
    port_names = [p["name"] for c in pod_template["spec"]["containers"]
                  for p in c.get("ports", [])]
    endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    from wabot import naming

    labels = naming.bot_labels("b", "s")
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_prometheus_rule_is_the_tested_rules_file() -> None:
    rule = find(render(ALL_VALUES), "PrometheusRule")
    expected = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == expected


def test_dashboard_configmap_holds_the_dashboard_for_grafanas_sidecar() -> None:
    cm = find(render(ALL_VALUES), "ConfigMap", "wabot-wabot-operator-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "files" / "dashboards" / "wabot-fleet.json").read_text()
    assert json.loads(cm["data"]["wabot-fleet.json"]) == json.loads(shipped)


def test_network_policies_keep_the_operator_to_dns_and_the_api_server() -> None:
    objects = render(ALL_VALUES, sets={"watchNamespaces": "{team-a}"})
    policy = find(objects, "NetworkPolicy", "wabot-wabot-operator")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = sorted(p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 443, 6443]
    bots = find(objects, "NetworkPolicy", "wabot-wabot-operator-bots")
    assert bots["metadata"]["namespace"] == "team-a"
    assert bots["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "bot"
    assert bots["spec"]["policyTypes"] == ["Ingress", "Egress"]


def _bot_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    policy = find(objects, "NetworkPolicy", "wabot-wabot-operator-bots")
    spec: dict[str, Any] = policy["spec"]
    return spec


def test_bots_are_fenced_by_default() -> None:
    """The default chart's policy for the bot pods (of the release namespace): in, only their
    HTTP port; out, DNS, the API server, and the public internet on 443/5222 only (WhatsApp):
    no private, loopback or link-local (cloud metadata) address, unless the admin adds a rule."""
    objects = render(namespace="wabot-system")
    policy = find(objects, "NetworkPolicy", "wabot-wabot-operator-bots")
    assert policy["metadata"]["namespace"] == "wabot-system"
    spec = policy["spec"]
    pod = yaml.safe_load(Template((BOT_TEMPLATES / "pod.yaml").read_text())
                         .safe_substitute(childName="wabot-b", image="x", pvcName="p"))
    from wabot import naming

    assert spec["podSelector"]["matchLabels"].items() <= naming.bot_labels("b", "s").items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for rule in spec["ingress"] for p in rule["ports"]} == {8080}
    http_port = pod["spec"]["containers"][0]["ports"][0]
    assert (http_port["name"], http_port["containerPort"]) == ("http", 8080)
    dns, api, public = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert {p["port"] for p in public["ports"]} == {443, 5222}
    v4, v6 = (peer["ipBlock"] for peer in public["to"])
    assert v4["cidr"] == "0.0.0.0/0" and v6["cidr"] == "::/0"
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                    "127.0.0.0/8", "100.64.0.0/10"):
        assert private in v4["except"]
    for private in ("fc00::/7", "fe80::/10", "::1/128"):
        assert private in v6["except"]
    # The admin's extra destinations (a database, an internal webhook receiver) are added.
    extra = _bot_policy(render(ALL_VALUES, sets={"watchNamespaces": "{team-a}"}))["egress"][3:]
    assert extra == [{"to": [{"ipBlock": {"cidr": "10.20.0.15/32"}}],
                      "ports": [{"port": 5432, "protocol": "TCP"}]}]
    # Cluster-wide, the chart cannot know the namespaces: no bot policy (documented).
    assert not [o for o in render(sets={"clusterWide": "true"})
                if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-bots")]


def test_gateway_policy_reaches_only_dns_the_api_server_and_the_bots() -> None:
    objects = render(ALL_VALUES)
    spec = find(objects, "NetworkPolicy", "wabot-wabot-operator-gateway")["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert spec["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [
        {"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "ingress-nginx"}}}]}]
    dns, api, bots = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [p["ipBlock"]["cidr"] for p in api["to"]] == ["10.0.0.1/32", "127.0.0.1/32"]
    assert bots["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in bots["to"]] == ["wabot-ci-a", "wabot-ci-b"]
    assert all(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "bot"
               for peer in bots["to"])


def test_pdb_guards_the_operator_pods() -> None:
    objects = render(ALL_VALUES)
    pdb = find(objects, "PodDisruptionBudget", OPERATOR)
    deployment = find(objects, "Deployment", OPERATOR)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert deployment["spec"]["replicas"] > pdb["spec"]["minAvailable"]


def test_pdbs_are_on_where_they_protect_something() -> None:
    """The operator: a budget with peering replicas (one evicted at a time), none for a single
    replica (it would block drains or protect nothing). The gateway (2 replicas): on."""
    assert not [o for o in render() if o["kind"] == "PodDisruptionBudget"]
    pdb = find(render(sets={"replicaCount": "2"}), "PodDisruptionBudget", OPERATOR)
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    gateway = find(render(sets={"gateway.enabled": "true"}), "PodDisruptionBudget",
                   "wabot-wabot-operator-gateway")
    assert gateway["spec"]["maxUnavailable"] == 1 and "minAvailable" not in gateway["spec"]


# --- values.schema.json ----------------------------------------------------------------------


@pytest.mark.parametrize("sets", [
    {"replicaCount": "0"},
    {"watchNamespaces": "{team-*}"},
    {"bots.image.digest": "latest"},
    {"operator.logLevel": "TRACE"},
    {"operator.metricsPort": "70000"},
    {"bots.databaseSecret": "Not A Name"},
    {"bots.storage.size": "lots"},
    {"typoedKey": "1"},
], ids=lambda s: next(iter(s)))
def test_schema_rejects_bad_values(sets: dict[str, str]) -> None:
    out = helm(*template_args(sets=sets), check=False)
    assert out.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr


# --- the send-message gateway ----------------------------------------------------------------

GATEWAY = "wabot-wabot-operator-gateway"


def test_the_gateway_is_behind_its_value() -> None:
    assert not [o for o in render() if GATEWAY in o["metadata"]["name"]]
    objects = render(sets={"gateway.enabled": "true"})
    kinds = sorted(o["kind"] for o in objects if o["metadata"]["name"].startswith(GATEWAY))
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "Role", "RoleBinding",
                            "RoleBinding", "Deployment", "Service", "NetworkPolicy",
                            "PodDisruptionBudget"])
    deployment = find(objects, "Deployment", GATEWAY)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == GATEWAY
    (container,) = pod["containers"]
    assert container["image"] == find(objects, "Deployment", OPERATOR)["spec"]["template"][
        "spec"]["containers"][0]["image"]  # the operator image runs ROLE=gateway
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROLE"] == "gateway"
    assert env["WABOT_GATEWAY_KEYS_NAMESPACE"] == "wabot-system-api-keys"
    assert env["WABOT_GATEWAY_NAMESPACES"] == "wabot-system"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    service = find(objects, "Service", GATEWAY)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    # The operator's Service and PDB do not select the gateway's pods.
    assert find(objects, "Service", OPERATOR)["spec"]["selector"][
        "app.kubernetes.io/component"] == "operator"


def test_gateway_env_is_what_the_gateway_and_the_operator_read() -> None:
    from wabot_operator import config as opconfig

    from gateway.config import GatewayConfig

    objects = render(ALL_VALUES)
    (container,) = find(objects, "Deployment", GATEWAY)["spec"]["template"]["spec"][
        "containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    cfg = GatewayConfig.from_env(env)
    assert cfg.keys_namespace == "wabot-system-api-keys"
    assert cfg.namespaces == ("wabot-ci-a", "wabot-ci-b")
    assert (cfg.timeout_s, cfg.log_level, cfg.port) == (20.0, "DEBUG", 8080)
    op_env = {k: v for k, v in env_of(find(objects, "Deployment", OPERATOR)).items()
              if isinstance(v, str)}
    op_env[opconfig.ENV_PREFIX + "TEMPLATES_DIR"] = str(CHART / "files" / "bot-templates")
    sa = opconfig.OperatorConfig.from_env(op_env).gateway_service_account
    assert sa is not None and (sa.namespace, sa.name) == ("wabot-system", GATEWAY)


def test_gateway_rbac_is_least_privilege() -> None:
    """WhatsAppBots and pods: get only. Secrets: list in the keys namespace only (the per-bot
    API-token Secrets are granted by the operator's per-bot Role, by name)."""
    objects = render(ALL_VALUES)
    cluster_role = find(objects, "ClusterRole", GATEWAY)
    assert cluster_role["rules"] == [
        {"apiGroups": ["wabot.io"], "resources": ["whatsappbots"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"
                and o["roleRef"]["name"] == GATEWAY]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["wabot-ci-a", "wabot-ci-b"]
    keys = find(objects, "Role", f"{GATEWAY}-keys")
    assert keys["metadata"]["namespace"] == "wabot-system-api-keys"
    assert keys["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
    # Nothing of the gateway's grants Secrets in the release namespace (the owner's DSN).
    gateway_roles = {b["roleRef"]["name"] for b in objects
                     if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
                     and any(s["name"] == GATEWAY for s in b["subjects"])
                     and b["metadata"].get("namespace", "wabot-system") == "wabot-system"}
    for role in (o for o in objects if o["kind"] in ("Role", "ClusterRole")
                 and o["metadata"]["name"] in gateway_roles):
        assert not [r for r in role["rules"] if "secrets" in r["resources"]], role
    # The operator can create the per-bot gateway Role: it holds what that Role grants.
    assert _grants(_rules(render()), "", "secrets", "get")


def test_api_keys_live_in_a_namespace_of_their_own() -> None:
    """Finding 9: the gateway may list every Secret of its keys namespace, which used to be the
    release namespace (where the migrate Job's owner DSN is). Now the chart makes
    `<release namespace>-api-keys`, kept on uninstall, and refuses the release namespace or a
    bots' namespace as the keys namespace."""
    objects = render(sets={"gateway.enabled": "true"})
    keys_ns = find(objects, "Namespace", "wabot-system-api-keys")
    assert keys_ns["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert keys_ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert not [o for o in render(sets={"gateway.enabled": "true",
                                        "gateway.createKeysNamespace": "false"})
                if o["kind"] == "Namespace"]
    for keys, message in (("wabot-system", "must not be the release namespace"),
                          ("team-a", "must not be a namespace of bots")):
        out = helm(*template_args(sets={"gateway.enabled": "true", "gateway.keysNamespace": keys,
                                        "watchNamespaces": "{team-a}"}), check=False)
        assert out.returncode != 0 and message in out.stderr, out.stderr


def test_bot_network_policy_admits_the_gateway() -> None:
    objects = render(ALL_VALUES, sets={"watchNamespaces": "{team-a}"})
    bots = find(objects, "NetworkPolicy", "wabot-wabot-operator-bots")
    peers = [p for rule in bots["spec"]["ingress"] for p in rule.get("from", [])]
    assert any(p.get("podSelector", {}).get("matchLabels", {}).get(
        "app.kubernetes.io/component") == "gateway" for p in peers)


def test_gateway_ingress_serves_the_service_over_tls_only() -> None:
    assert not [o for o in render(sets={"gateway.enabled": "true"}) if o["kind"] == "Ingress"]
    objects = render(ALL_VALUES)
    ingress = find(objects, "Ingress", GATEWAY)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["bots.example.com"], "secretName": "wabot-gateway-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "bots.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = find(objects, "Service", GATEWAY)
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] == service["spec"]["ports"][0]["name"]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}


@pytest.mark.parametrize("sets", [
    {"gateway.ingress.enabled": "true"},  # no host, no TLS secret
    {"gateway.ingress.enabled": "true", "gateway.ingress.host": "bots.example.com"},  # no TLS
    {"gateway.ingress.enabled": "true", "gateway.ingress.host": "Not A Host",
     "gateway.ingress.tls.secretName": "tls"},
], ids=["no-host", "no-tls", "bad-host"])
def test_schema_refuses_an_ingress_without_host_or_tls(sets: dict[str, str]) -> None:
    out = helm(*template_args(sets={"gateway.enabled": "true", **sets}), check=False)
    assert out.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr


@pytest.mark.parametrize("sets", [
    {"gateway.replicaCount": "0"},
    {"gateway.logLevel": "TRACE"},
    {"gateway.keysNamespace": "Not_A_Namespace"},
    {"gateway.typo": "1"},
], ids=lambda s: next(iter(s)))
def test_schema_rejects_bad_gateway_values(sets: dict[str, str]) -> None:
    out = helm(*template_args(sets={"gateway.enabled": "true", **sets}), check=False)
    assert out.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr


def test_the_admission_policy_guards_the_tenant_boundary_on_new_enough_clusters() -> None:
    """On by default (Kubernetes >= 1.30): CREATE only, so a finalizer can always be removed
    from a bot whose tenant the admin has taken away; bound to every namespace unless the
    admin narrows it."""
    objects = render()
    policy = find(objects, "ValidatingAdmissionPolicy", "wabot-wabot-operator-tenants")
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE"] and rule["resources"] == ["whatsappbots"]
    assert "wabot.io/tenants" in policy["spec"]["variables"][0]["expression"]
    binding = find(objects, "ValidatingAdmissionPolicyBinding", "wabot-wabot-operator-tenants")
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]
    narrowed = find(render(ALL_VALUES), "ValidatingAdmissionPolicyBinding",
                    "wabot-wabot-operator-tenants")
    assert narrowed["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"wabot.io/ci-admission": "true"}}
    off = render(sets={"policy.admission.enabled": "false"})
    assert not [o for o in off if o["kind"].startswith("ValidatingAdmissionPolicy")]
