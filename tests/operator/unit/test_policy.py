"""The admin's policy over what a bot's spec may ask of the cluster (issue 21: tenants, Secrets,
images, PriorityClasses, tolerations, node selectors), as pure decisions."""

from __future__ import annotations

from typing import Any

import pytest
from wabot_operator.config import OperatorConfig
from wabot_operator.policy import (
    BotPolicy,
    Facts,
    SecretFacts,
    allowed_tenants,
    check,
    image_allowed,
    image_repository,
)

from wabot.spec import WhatsAppBotSpec

POLICY = BotPolicy(images=("reg.example/wabot-worker",))
LABELLED = SecretFacts(bot_secret=True, tenant=None)


def spec(**fields: Any) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": "acme", **fields})


def facts(tenants: str | None = "acme", **secrets: SecretFacts | None) -> Facts:
    return Facts("team-a", tenants, tuple(sorted(secrets.items())))


def test_a_namespace_hosts_only_the_tenants_its_admin_named() -> None:
    assert check(spec(), facts("acme, globex"), POLICY) is None
    refusal = check(spec(serverName="initech"), facts("acme,globex"), POLICY)
    assert refusal is not None and refusal.reason == "TenantNotAllowed"
    assert "spec.serverName" in refusal.message and "acme, globex" in refusal.message
    assert check(spec(serverName="initech"), facts("*"), POLICY) is None
    # An empty annotation hosts nobody.
    assert check(spec(), facts(""), POLICY) is not None


def test_without_the_annotation_a_namespace_hosts_the_tenant_named_like_it() -> None:
    assert allowed_tenants("acme", None) == {"acme"}
    assert check(spec(serverName="team-a"), facts(None), POLICY) is None
    refusal = check(spec(serverName="globex"), facts(None), POLICY)
    assert refusal is not None and refusal.reason == "TenantNotAllowed"


@pytest.mark.parametrize("field", ["database", "webhook", "proxy"])
def test_a_secret_must_be_marked_for_bots_and_for_the_tenant(field: str) -> None:
    ref = {"secretRef": {"name": "s"}}
    body = {**ref, "url": "https://hooks.example/x"} if field == "webhook" else ref
    wanted = spec(**{field: body})
    assert check(wanted, facts(s=LABELLED), POLICY) is None
    assert check(wanted, facts(s=SecretFacts(True, "acme")), POLICY) is None
    texts = set()
    for found in (None, SecretFacts(False, None), SecretFacts(True, "globex"),
                  SecretFacts(False, "acme")):
        refusal = check(wanted, facts(s=found), POLICY)
        assert refusal is not None and refusal.reason == "SecretNotAllowed"
        assert f"spec.{field}.secretRef" in refusal.message
        texts.add(refusal.message)
    # Missing, unlabelled and another tenant's read the same: no probing which Secrets exist.
    assert len(texts) == 1


def test_the_operators_own_database_secret_can_never_be_named() -> None:
    policy = BotPolicy(images=(), reserved_secrets=("wabot-db",))
    refusal = check(spec(database={"secretRef": {"name": "wabot-db", "key": "globex"}}),
                    facts(**{"wabot-db": LABELLED}), policy)
    assert refusal is not None and refusal.reason == "SecretNotAllowed"


def test_images() -> None:
    assert image_repository("reg:5000/team/app:1.2@sha256:ab") == "reg:5000/team/app"
    assert image_repository("reg:5000/app") == "reg:5000/app"
    allowed = ("reg.example/wabot-worker", "mirror.example/wabot/", "x/y:1")
    assert image_allowed("reg.example/wabot-worker:2", allowed)
    assert image_allowed("reg.example/wabot-worker@sha256:0123", allowed)
    assert image_allowed("mirror.example/wabot/worker:1", allowed)
    assert image_allowed("x/y:1", allowed)
    for bad in ("reg.example/wabot-worker-evil:1", "evil.example/wabot-worker:1",
                "reg.example/wabot-worker/../x:1", "x/y:2", "mirror.example/wabot/../../x:1",
                "mirror.example/wabotx/worker:1"):
        assert not image_allowed(bad, allowed), bad
    refusal = check(spec(image="evil.example/miner:1"), facts(), POLICY)
    assert refusal is not None and refusal.reason == "ImageNotAllowed"
    assert check(spec(image="evil.example/miner:1"), facts(), BotPolicy(images=("*",))) is None


def test_priority_classes_tolerations_and_node_selectors_default_to_safe() -> None:
    default = BotPolicy()
    for fields, reason in (
            ({"priorityClassName": "system-node-critical"}, "PriorityClassNotAllowed"),
            ({"tolerations": [{"operator": "Exists"}]}, "TolerationNotAllowed"),
            ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                               "operator": "Exists"}]}, "TolerationNotAllowed"),
            ({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
             "NodeSelectorNotAllowed")):
        refusal = check(spec(**fields), facts(), default)
        assert refusal is not None and refusal.reason == reason, fields
    assert check(spec(nodeSelector={"topology.kubernetes.io/zone": "a"}), facts(),
                 default) is None
    allowing = BotPolicy(priority_classes=("bots",), toleration_keys=("dedicated",))
    assert check(spec(priorityClassName="bots",
                      tolerations=[{"key": "dedicated", "operator": "Exists"}]), facts(),
                 allowing) is None
    # A toleration without a key tolerates every taint: only `*` allows it.
    assert check(spec(tolerations=[{"operator": "Exists"}]), facts(), allowing) is not None
    assert check(spec(tolerations=[{"operator": "Exists"}]), facts(),
                 BotPolicy(toleration_keys=("*",))) is None


def test_the_operator_settings_feed_the_policy() -> None:
    base = {"WABOT_OPERATOR_WORKER_IMAGE": "reg.example/wabot-worker:1.0",
            "WABOT_OPERATOR_DATABASE_SECRET": "wabot-db:{serverName}"}
    policy = OperatorConfig.from_env(base).bot_policy()
    assert policy.images == ("reg.example/wabot-worker",)
    assert policy.reserved_secrets == ("wabot-db",)
    assert policy.priority_classes == () and policy.toleration_keys == ()
    policy = OperatorConfig.from_env({
        **base, "WABOT_OPERATOR_ALLOWED_IMAGES": "a/b, c/",
        "WABOT_OPERATOR_ALLOWED_PRIORITY_CLASSES": "bots",
        "WABOT_OPERATOR_ALLOWED_TOLERATIONS": "*",
        "WABOT_OPERATOR_ALLOWED_NODE_SELECTOR_KEYS": ""}).bot_policy()
    assert policy.images == ("a/b", "c/")
    assert policy.priority_classes == ("bots",) and policy.toleration_keys == ("*",)
    assert policy.node_selector_keys == ()


def test_of_two_bots_of_one_identity_only_the_first_runs() -> None:
    refusal = check(spec(), Facts("team-a", "*", duplicate_of="first"), POLICY)
    assert refusal is not None and refusal.reason == "DuplicateBotId"
    assert "WhatsAppBot first" in refusal.message and "'acme'" in refusal.message
