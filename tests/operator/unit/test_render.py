"""The pure renderers: what a bot's PVC, ServiceAccount, Role, RoleBinding, Lease and Pod look
like, from the spec, the operator defaults and the templates in operator/bot-templates/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from wabot_operator.specs.bot import BotRef, RenderDefaults
from wabot_operator.specs.children import Children, render_children
from wabot_operator.specs.pod import pod_hash
from wabot_operator.templates import TemplateError, Templates, TemplateStore, load_templates

from wabot import naming
from wabot.spec import (
    RESERVED_ENV_NAMES,
    EnvVar,
    ResourceList,
    ResourcesSpec,
    SecretKeyRef,
    WhatsAppBotSpec,
)

REPO = Path(__file__).resolve().parents[3]
TEMPLATES_DIR = REPO / "operator" / "bot-templates"
BOT = BotRef(name="sales", namespace="tenant-a", uid="0b5e3c1e-1111-2222-3333-444455556666")
DEFAULTS = RenderDefaults(worker_image="registry.example/wabot-worker:1.2.3")


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(TEMPLATES_DIR)


def spec(**fields: Any) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": "acme", **fields})


def render(templates: Templates, defaults: RenderDefaults = DEFAULTS,
           **fields: Any) -> Children:
    return render_children(BOT, spec(**fields), defaults, templates)


def worker(children: Children) -> dict[str, Any]:
    assert children.pod is not None
    (container,) = children.pod["spec"]["containers"]
    assert container["name"] == "worker"
    return dict(container)


def env_of(children: Children) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in worker(children)["env"]}


# --- names, labels, owners ------------------------------------------------------------------


def test_every_child_has_its_fixed_name_namespace_and_labels(templates: Templates) -> None:
    c = render(templates)
    assert c.pod is not None
    names = {doc["kind"]: doc["metadata"]["name"] for doc in [*c.supporting(), c.pod]}
    assert names == {
        "PersistentVolumeClaim": "wabot-sales-auth",
        "ServiceAccount": "wabot-sales",
        "Role": "wabot-sales",
        "RoleBinding": "wabot-sales",
        "Lease": "wabot-sales",
        "Pod": "wabot-sales",
    }
    for doc in [*c.supporting(), c.pod]:
        assert doc["metadata"]["namespace"] == "tenant-a"
        labels = doc["metadata"]["labels"]
        assert labels.items() >= naming.bot_labels("sales", "acme").items()
        assert labels[naming.LABEL_BOT] == "sales" and labels[naming.LABEL_SERVER] == "acme"


def test_everything_but_a_retained_pvc_is_controlled_by_the_bot(templates: Templates) -> None:
    c = render(templates)
    assert c.pod is not None
    for doc in [c.service_account, c.role, c.role_binding, c.lease, c.pod]:
        assert doc["metadata"]["ownerReferences"] == [{
            "apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot", "name": "sales",
            "uid": BOT.uid, "controller": True, "blockOwnerDeletion": True,
        }], doc["kind"]
    # Retain (the default): no owner, so no garbage collection can take the session.
    assert "ownerReferences" not in c.pvc["metadata"]


def test_a_pvc_with_retain_policy_delete_is_owned(templates: Templates) -> None:
    c = render(templates, storage={"retainPolicy": "Delete"})
    (ref,) = c.pvc["metadata"]["ownerReferences"]
    assert ref["uid"] == BOT.uid and ref["kind"] == "WhatsAppBot"


def test_pvc_size_and_class_come_from_the_spec(templates: Templates) -> None:
    c = render(templates)
    assert c.pvc["spec"]["resources"]["requests"]["storage"] == "256Mi"
    assert "storageClassName" not in c.pvc["spec"]  # the cluster default
    c = render(templates, storage={"size": "1Gi", "storageClassName": "fast-ssd"})
    assert c.pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert c.pvc["spec"]["storageClassName"] == "fast-ssd"
    assert c.pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


# --- RBAC -----------------------------------------------------------------------------------


def test_role_reaches_only_the_bots_own_objects(templates: Templates) -> None:
    rules = render(templates).role["rules"]
    assert rules == [
        {"apiGroups": ["wabot.io"], "resources": ["whatsappbots"], "resourceNames": ["sales"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["wabot.io"], "resources": ["whatsappbots/status"],
         "resourceNames": ["sales"], "verbs": ["get", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["wabot-sales"], "verbs": ["get", "update", "patch"]},
    ]
    for rule in rules:
        assert rule["resourceNames"], "a rule without resourceNames reaches every object"
        assert "create" not in rule["verbs"] and "delete" not in rule["verbs"]


def test_role_grants_no_secret_whatever_the_spec_names(templates: Templates) -> None:
    """The kubelet injects the Secrets a spec names (secretKeyRef); the bot's token reads
    none, so a spec cannot turn the bot into a reader of Secrets it was never given."""
    c = render(templates, database={"secretRef": {"name": "acme-dsn", "key": "url"}},
               webhook={"url": "https://hooks.example/x", "secretRef": {"name": "acme-hook"}},
               proxy={"secretRef": {"name": "acme-proxy"}})
    assert not [r for r in c.role["rules"] if "secrets" in r["resources"]]
    c = render(templates, RenderDefaults("img", SecretKeyRef(name="shared-dsn")))
    assert not [r for r in c.role["rules"] if "secrets" in r["resources"]]


def test_rolebinding_binds_the_bots_role_to_the_bots_serviceaccount_only(
        templates: Templates) -> None:
    rb = render(templates).role_binding
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "wabot-sales"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "wabot-sales",
                               "namespace": "tenant-a"}]


def test_lease_is_created_without_a_holder(templates: Templates) -> None:
    lease = render(templates).lease
    assert lease["spec"] == {}


# --- the pod --------------------------------------------------------------------------------


def test_pod_env_is_exactly_the_design_table(templates: Templates) -> None:
    c = render(templates)
    env = worker(c)["env"]
    assert [e["name"] for e in env] == [
        "ROLE", "BOT_ID", "SERVER_NAME", "WABOT_BOT_NAME", "WABOT_NAMESPACE", "POD_NAME",
        "WABOT_LEASE_NAME", "AUTH_DIR", "HTTP_PORT", "WABOT_SPEC_SOURCE", "WABOT_API_TOKEN",
        "GOMAXPROCS", "MALLOC_ARENA_MAX", "GOMEMLIMIT", "MALLOC_MMAP_THRESHOLD_",
    ]
    assert env_of(c) == {
        "ROLE": "worker",
        "BOT_ID": "sales",
        "SERVER_NAME": "acme",
        "WABOT_BOT_NAME": "sales",
        "WABOT_NAMESPACE": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        "POD_NAME": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        "WABOT_LEASE_NAME": "wabot-sales",
        "AUTH_DIR": "/var/lib/wabot",
        "HTTP_PORT": "8080",
        "WABOT_SPEC_SOURCE": "kubernetes",
        "WABOT_API_TOKEN": {"secretKeyRef": {"name": "wabot-sales-api", "key": "token",
                                             "optional": True}},
        "GOMAXPROCS": "2",
        "MALLOC_ARENA_MAX": "2",
        "GOMEMLIMIT": "32MiB",
        "MALLOC_MMAP_THRESHOLD_": "131072",
    }


def test_the_runtime_tuning_is_a_default_the_bot_or_the_template_may_change(
        templates: Templates) -> None:
    """GOMAXPROCS and MALLOC_ARENA_MAX (wabot/workerenv.py RUNTIME_TUNING) are set for every
    worker, but unlike the contract's names a bot's env replaces them (once, not twice)."""
    c = render(templates, env=[{"name": "GOMAXPROCS", "value": "4"}])
    names = [e["name"] for e in worker(c)["env"]]
    assert env_of(c)["GOMAXPROCS"] == "4" and names.count("GOMAXPROCS") == 1
    assert env_of(c)["MALLOC_ARENA_MAX"] == "2"  # (an admin's template env goes the same way)


def test_bot_id_defaults_to_the_name_and_follows_the_spec(templates: Templates) -> None:
    assert env_of(render(templates))["BOT_ID"] == "sales"
    assert env_of(render(templates, botId="legacy-7"))["BOT_ID"] == "legacy-7"


def test_database_url_comes_from_the_spec_then_the_operator_default(
        templates: Templates) -> None:
    own = render(templates, RenderDefaults("img", SecretKeyRef(name="shared")),
                 database={"secretRef": {"name": "acme-dsn", "key": "url"}})
    assert env_of(own)["DATABASE_URL"] == {"secretKeyRef": {"name": "acme-dsn", "key": "url"}}
    shared = render(templates, RenderDefaults("img", SecretKeyRef(name="shared")))
    assert env_of(shared)["DATABASE_URL"] == {"secretKeyRef": {"name": "shared",
                                                               "key": "value"}}
    assert "DATABASE_URL" not in env_of(render(templates))  # the worker falls back to SQLite
    # One default Secret, one DSN per tenant: the key names the tenant (a worker refuses a
    # database role bound to another tenant).
    per_tenant = render(templates, RenderDefaults("img", SecretKeyRef(name="wabot-db",
                                                                      key="{serverName}")))
    tenant = env_of(per_tenant)["SERVER_NAME"]
    assert env_of(per_tenant)["DATABASE_URL"] == {"secretKeyRef": {"name": "wabot-db",
                                                                   "key": tenant}}


def test_spec_env_is_appended_and_cannot_override_the_contract(templates: Templates) -> None:
    c = render(templates, env=[{"name": "LOG_LEVEL", "value": "debug"}])
    assert env_of(c)["LOG_LEVEL"] == "debug"
    assert [e["name"] for e in worker(c)["env"]][-1] == "LOG_LEVEL"
    # A bot stored before the CRD refused reserved names: the operator still drops them.
    sneaky = spec().model_copy(update={"env": [EnvVar.model_construct(name="BOT_ID",
                                                                       value="x")]})
    c = render_children(BOT, sneaky, DEFAULTS, templates)
    assert env_of(c)["BOT_ID"] == "sales"
    assert [e["name"] for e in worker(c)["env"]].count("BOT_ID") == 1


def test_the_model_refuses_reserved_env_names() -> None:
    for name in RESERVED_ENV_NAMES:
        with pytest.raises(ValueError, match="set by wabot itself"):
            spec(env=[{"name": name, "value": "x"}])


def test_image_comes_from_the_spec_else_the_operator_default(templates: Templates) -> None:
    assert worker(render(templates))["image"] == "registry.example/wabot-worker:1.2.3"
    assert worker(render(templates, image="wabot-worker:canary"))["image"] == (
        "wabot-worker:canary")


EPHEMERAL = {"requests": {"ephemeral-storage": "64Mi"},
             "limits": {"ephemeral-storage": "256Mi"}}  # operator/bot-templates/pod.yaml's


def test_resources_default_and_follow_the_spec(templates: Templates) -> None:
    """cpu and memory from the spec or the defaults; the template's ephemeral-storage stays
    (kube-score: a container without it may fill the node's disk)."""
    assert worker(render(templates))["resources"] == {
        "requests": {"ephemeral-storage": "64Mi", "cpu": "50m", "memory": "96Mi"},
        "limits": {"ephemeral-storage": "256Mi", "cpu": "500m", "memory": "240Mi"},
    }
    c = render(templates, resources={"limits": {"memory": "512Mi"}})
    assert worker(c)["resources"] == {
        "requests": {**EPHEMERAL["requests"], "cpu": "50m", "memory": "96Mi"},
        "limits": {**EPHEMERAL["limits"], "cpu": "500m", "memory": "512Mi"}}


def test_operator_defaults_fill_what_the_spec_leaves_unset(templates: Templates) -> None:
    """An admin changes every bot's defaults in one place (the chart's bots.resources and
    bots.storage); a bot's own values still win key by key."""
    defaults = RenderDefaults(
        worker_image="img",
        resources=ResourcesSpec(requests=ResourceList(cpu="20m"),
                                limits=ResourceList(cpu="1", memory="1Gi")),
        storage_size="2Gi", storage_class="fast-ssd")
    c = render(templates, defaults)
    assert worker(c)["resources"] == {
        "requests": {**EPHEMERAL["requests"], "cpu": "20m"},
        "limits": {**EPHEMERAL["limits"], "cpu": "1", "memory": "1Gi"}}
    assert c.pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert c.pvc["spec"]["storageClassName"] == "fast-ssd"
    c = render(templates, defaults, resources={"limits": {"memory": "300Mi"}},
               storage={"size": "64Mi", "storageClassName": "standard"})
    assert worker(c)["resources"]["limits"] == {**EPHEMERAL["limits"], "cpu": "1",
                                                "memory": "300Mi"}
    assert c.pvc["spec"]["resources"]["requests"]["storage"] == "64Mi"
    assert c.pvc["spec"]["storageClassName"] == "standard"


def test_pod_security_is_the_restricted_profile_plus_read_only_root(
        templates: Templates) -> None:
    c = render(templates)
    assert c.pod is not None
    pod_sc = c.pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = worker(c)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not sc.get("privileged")


def test_pod_probes_volumes_and_lifecycle(templates: Templates) -> None:
    c = render(templates)
    assert c.pod is not None
    ps = c.pod["spec"]
    w = worker(c)
    assert w["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert w["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in w["ports"]
    mounts = {m["name"]: m["mountPath"] for m in w["volumeMounts"]}
    assert mounts == {"auth": "/var/lib/wabot", "tmp": "/tmp"}
    volumes = {v["name"]: v for v in ps["volumes"]}
    assert volumes["auth"]["persistentVolumeClaim"] == {"claimName": "wabot-sales-auth"}
    assert "emptyDir" in volumes["tmp"]
    assert ps["restartPolicy"] == "Always"
    assert ps["terminationGracePeriodSeconds"] == 30
    assert ps["serviceAccountName"] == "wabot-sales"
    assert ps["automountServiceAccountToken"] is True  # the worker needs its Lease and status


def test_scheduling_fields_come_from_the_spec(templates: Templates) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    c = render(templates, nodeSelector={"pool": "bots"},
               tolerations=[{"key": "bots", "operator": "Exists", "effect": "NoSchedule"}],
               affinity=affinity, priorityClassName="bots-high")
    assert c.pod is not None
    ps = c.pod["spec"]
    assert ps["nodeSelector"] == {"pool": "bots"}
    assert ps["tolerations"] == [{"key": "bots", "operator": "Exists", "effect": "NoSchedule"}]
    assert ps["affinity"] == affinity
    assert ps["priorityClassName"] == "bots-high"
    plain = render(templates).pod
    assert plain is not None
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert key not in plain["spec"]


def test_suspended_bot_has_no_pod_but_keeps_everything_else(templates: Templates) -> None:
    running = render(templates)
    suspended = render(templates, suspend=True)
    assert suspended.pod is None
    assert suspended.pod_hash == running.pod_hash  # resuming does not count as a change
    assert suspended.pvc == running.pvc
    assert suspended.lease == running.lease


# --- the pod-spec hash ----------------------------------------------------------------------


def test_hash_is_stable_and_annotated(templates: Templates) -> None:
    a, b = render(templates), render(templates)
    assert a.pod is not None
    assert a.pod_hash == b.pod_hash
    assert a.pod["metadata"]["annotations"][naming.ANNOTATION_POD_HASH] == a.pod_hash
    assert pod_hash(a.pod) == a.pod_hash


@pytest.mark.parametrize("change", [
    {"resources": {"limits": {"cpu": "1", "memory": "256Mi"}}},
    {"image": "wabot-worker:2"},
    {"env": [{"name": "X", "value": "1"}]},
    {"nodeSelector": {"pool": "b"}},
    {"database": {"secretRef": {"name": "dsn"}}},
])
def test_pod_affecting_changes_change_the_hash(templates: Templates,
                                               change: dict[str, Any]) -> None:
    assert render(templates, **change).pod_hash != render(templates).pod_hash


@pytest.mark.parametrize("change", [
    {"commands": {"prefix": "?"}},
    {"settings": {"autoRead": True}},
    {"rateLimit": {"perChatPerMinute": 5}},
    {"features": {"beta": True}},
    {"storage": {"retainPolicy": "Delete"}},
])
def test_changes_the_worker_reads_live_keep_the_pod(templates: Templates,
                                                    change: dict[str, Any]) -> None:
    """The worker watches its own WhatsAppBot for commands and settings: no restart, no
    reconnect, no risk to the session."""
    assert render(templates, **change).pod_hash == render(templates).pod_hash


# --- templates ------------------------------------------------------------------------------


def test_the_shipped_templates_load(templates: Templates) -> None:
    assert set(templates.docs) == {"pvc.yaml", "serviceaccount.yaml", "role.yaml",
                                   "rolebinding.yaml", "lease.yaml", "pod.yaml"}


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, target)
    return target


def test_an_admin_override_changes_the_pod_and_its_hash(tmp_path: Path,
                                                        templates: Templates) -> None:
    d = copy_templates(tmp_path)
    pod = yaml.safe_load((d / "pod.yaml").read_text())
    pod["spec"]["terminationGracePeriodSeconds"] = 90
    pod["spec"]["containers"][0]["env"] = [{"name": "HTTPS_PROXY", "value": "http://p:3128"},
                                          {"name": "ROLE", "value": "monolith"}]
    (d / "pod.yaml").write_text(yaml.safe_dump(pod))
    custom = render(load_templates(d))
    assert custom.pod is not None
    assert custom.pod["spec"]["terminationGracePeriodSeconds"] == 90
    assert env_of(custom)["HTTPS_PROXY"] == "http://p:3128"
    assert env_of(custom)["ROLE"] == "worker"  # the contract wins over the template
    assert custom.pod_hash != render(templates).pod_hash


def test_auth_dir_follows_the_templates_mount(tmp_path: Path) -> None:
    d = copy_templates(tmp_path)
    (d / "pod.yaml").write_text((d / "pod.yaml").read_text().replace(
        "mountPath: /var/lib/wabot", "mountPath: /data"))
    assert env_of(render(load_templates(d)))["AUTH_DIR"] == "/data"


def test_unknown_placeholder_is_an_error_naming_the_file(tmp_path: Path) -> None:
    d = copy_templates(tmp_path)
    (d / "lease.yaml").write_text((d / "lease.yaml").read_text().replace(
        "${leaseName}", "${leasName}"))
    with pytest.raises(TemplateError, match=r"lease.yaml: unknown placeholder \$\{leasName\}"):
        render(load_templates(d))


def test_wrong_kind_in_a_template_is_refused(tmp_path: Path) -> None:
    d = copy_templates(tmp_path)
    (d / "role.yaml").write_text((d / "role.yaml").read_text().replace(
        "kind: Role", "kind: ClusterRole"))
    with pytest.raises(TemplateError, match=r"role\.yaml: must be apiVersion"):
        load_templates(d)


def test_a_template_granting_secrets_is_refused(tmp_path: Path) -> None:
    """All of them, or named ones: the bot's token reads no Secret at all."""
    for i, rule in enumerate((
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["x"],
             "verbs": ["get"]},
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]})):
        d = copy_templates(tmp_path / str(i))
        role = yaml.safe_load((d / "role.yaml").read_text())
        role["rules"].append(rule)
        (d / "role.yaml").write_text(yaml.safe_dump(role))
        with pytest.raises(TemplateError, match="must not grant Secrets"):
            render(load_templates(d))


def test_values_cannot_inject_yaml(templates: Templates) -> None:
    """Placeholders are substituted in parsed strings: an image reference full of YAML stays
    one string."""
    evil = "x\nspec:\n  hostNetwork: true\n"
    c = render(templates, image=evil)
    assert c.pod is not None
    assert worker(c)["image"] == evil
    assert "hostNetwork" not in c.pod["spec"]


def test_store_reloads_changed_templates_and_keeps_the_last_good_set(tmp_path: Path) -> None:
    d = copy_templates(tmp_path)
    now = [0.0]
    store = TemplateStore(d, recheck_s=1.0, clock=lambda: now[0])
    first = store.get()
    assert store.get() is first  # unchanged files are not re-read
    pod = d / "pod.yaml"
    pod.write_text(pod.read_text().replace("terminationGracePeriodSeconds: 30",
                                           "terminationGracePeriodSeconds: 45"))
    assert store.get() is first  # the files are looked at again only after recheck_s
    now[0] += 1.0
    second = store.get()
    assert second.version != first.version
    pod.write_text("kind: [unclosed")
    now[0] += 1.0
    assert store.get() is second
    assert store.error is not None and "pod.yaml" in store.error


def test_store_without_any_good_set_raises(tmp_path: Path) -> None:
    with pytest.raises(TemplateError):
        TemplateStore(tmp_path).get()


def test_webhook_url_and_events_are_read_live_but_its_key_is_env(templates: Templates) -> None:
    """The URL and the event list are hot-applied by the worker; the signing key reaches it as
    WABOT_WEBHOOK_SECRET (secretKeyRef), so only a change of secretRef replaces the pod."""
    hook = {"url": "https://x.example/", "secretRef": {"name": "hook"}}
    base = render(templates, webhook=hook)
    other = render(templates, webhook={**hook, "url": "https://y.example/h",
                                       "events": ["message", "command"]})
    assert other.pod_hash == base.pod_hash
    moved = render(templates, webhook={**hook, "secretRef": {"name": "hook2"}})
    assert moved.pod_hash != base.pod_hash
    assert base.pod is not None
    env = {e["name"]: e for e in base.pod["spec"]["containers"][0]["env"]}
    assert env["WABOT_WEBHOOK_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "hook", "key": "value"}}
    assert "value" not in env["WABOT_WEBHOOK_SECRET"]


def test_proxy_url_comes_from_its_secret(
        templates: Templates) -> None:
    c = render(templates, proxy={"secretRef": {"name": "acme-proxy", "key": "url"}})
    assert c.pod is not None
    env = {e["name"]: e for e in c.pod["spec"]["containers"][0]["env"]}
    assert env["WABOT_PROXY_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "acme-proxy", "key": "url"}}
    assert "WABOT_PROXY_URL" not in {e["name"] for e in render(templates).pod["spec"][
        "containers"][0]["env"]}


def test_api_token_secret_and_optional_env(templates: Templates) -> None:
    c = render(templates)
    assert c.api_secret is not None
    assert c.api_secret["metadata"]["name"] == "wabot-sales-api"
    assert c.api_secret["metadata"]["ownerReferences"][0]["kind"] == "WhatsAppBot"
    assert "data" not in c.api_secret and "stringData" not in c.api_secret  # added at create
    assert c.pod is not None
    env = {e["name"]: e for e in c.pod["spec"]["containers"][0]["env"]}
    assert env["WABOT_API_TOKEN"]["valueFrom"] == {"secretKeyRef": {
        "name": "wabot-sales-api", "key": "token", "optional": True}}
    assert c.gateway_role is None and c.gateway_role_binding is None


def test_gateway_may_read_only_this_bots_token(templates: Templates) -> None:
    from wabot_operator.specs.bot import ServiceAccountRef

    defaults = RenderDefaults("img", gateway_service_account=ServiceAccountRef(
        "wabot-system", "wabot-gateway"))
    c = render(templates, defaults)
    assert c.gateway_role is not None and c.gateway_role_binding is not None
    assert c.gateway_role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                                        "resourceNames": ["wabot-sales-api"], "verbs": ["get"]}]
    assert c.gateway_role_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "wabot-gateway", "namespace": "wabot-system"}]
    assert c.gateway_role_binding["roleRef"]["name"] == c.gateway_role["metadata"]["name"]
    assert c.gateway_role in c.supporting() and c.gateway_role_binding in c.supporting()


def test_the_admins_worker_settings_reach_every_pod_and_no_spec_can_override_them(
        templates: Templates) -> None:
    defaults = RenderDefaults(worker_image="img", worker_env=(
        ("WABOT_WEBHOOK_ALLOW_CIDRS", "10.20.0.0/16"),))
    c = render_children(BOT, spec(), defaults, templates)
    assert env_of(c)["WABOT_WEBHOOK_ALLOW_CIDRS"] == "10.20.0.0/16"
    assert "WABOT_WEBHOOK_ALLOW_CIDRS" not in env_of(render(templates))
    with pytest.raises(ValueError, match="set by wabot itself"):
        spec(env=[{"name": "WABOT_WEBHOOK_ALLOW_CIDRS", "value": "0.0.0.0/0"}])
