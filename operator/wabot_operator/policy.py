"""What an admin allows a bot to be: pure checks of a validated spec against the admin's
policy and against facts read from the cluster (the namespace's tenants, the labels of the
Secrets the spec names).

Why the operator checks at all: it creates pods with its own rights, so anything a bot's spec
can name (a Secret to inject, another tenant's database key, an image, a PriorityClass, a
toleration) is something the bot's author could otherwise reach through the operator without
being allowed to touch it themselves. The chart's ValidatingAdmissionPolicy refuses the
tenant at admission; this is the same rule for clusters without it, plus the rules admission
cannot see (labels of other objects, the operator's own settings).

A refused bot gets no pod and no supporting objects (README "Security model").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wabot import naming
from wabot.spec import WhatsAppBotSpec
from wabot_operator.identities import DUPLICATE

ANY = "*"
# Node labels a bot may select on unless the admin says otherwise: where a pod runs, never
# which (tainted, dedicated) nodes it may reach.
DEFAULT_NODE_SELECTOR_KEYS: tuple[str, ...] = (
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
)


@dataclass(frozen=True)
class BotPolicy:
    """The admin's allow-lists (operator settings WABOT_OPERATOR_ALLOWED_*). `*` allows any."""

    # Image references: `*`, a repository (`reg.example/wabot-worker`, any tag or digest), a
    # prefix ending in `/` (everything under it), or one exact reference.
    images: tuple[str, ...] = ()
    priority_classes: tuple[str, ...] = ()
    toleration_keys: tuple[str, ...] = ()
    node_selector_keys: tuple[str, ...] = DEFAULT_NODE_SELECTOR_KEYS
    # Secrets the operator itself injects (the default database Secret holds every tenant's
    # key): a spec may never name them, labelled or not.
    reserved_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecretFacts:
    """What the operator read of a Secret: its labels only, never its data."""

    bot_secret: bool  # labelled wabot.io/bot-secret=true
    tenant: str | None  # its wabot.io/tenant label


@dataclass(frozen=True)
class Facts:
    """The cluster's side of a bot's check. Hashable: it is part of the key under which a pass
    reuses an earlier pass's result, so a changed label or annotation re-checks the bot."""

    namespace: str
    tenants: str | None  # the namespace's wabot.io/tenants annotation, as written
    secrets: tuple[tuple[str, SecretFacts | None], ...] = ()  # None: missing or unreadable
    # The bot of the same namespace that held this bot's (serverName, botId) first, if any
    # (identities.py).
    duplicate_of: str | None = None

    def secret(self, name: str) -> SecretFacts | None:
        return dict(self.secrets).get(name)


@dataclass(frozen=True)
class Refusal:
    reason: str  # CamelCase: the Degraded condition's reason and the Event's
    message: str


def secret_refs(spec: WhatsAppBotSpec) -> list[tuple[str, str]]:
    """(field path, Secret name) of every Secret the spec names."""
    refs = []
    if spec.database is not None:
        refs.append(("spec.database.secretRef", spec.database.secret_ref.name))
    if spec.webhook is not None:
        refs.append(("spec.webhook.secretRef", spec.webhook.secret_ref.name))
    if spec.proxy is not None:
        refs.append(("spec.proxy.secretRef", spec.proxy.secret_ref.name))
    return refs


def allowed_tenants(namespace: str, annotation: str | None) -> frozenset[str]:
    """The serverNames a namespace may host: its annotation's list, else its own name."""
    if annotation is None:
        return frozenset({namespace})
    return frozenset(t.strip() for t in annotation.split(",") if t.strip())


def image_repository(image: str) -> str:
    """`reg:5000/team/app:tag@sha256:...` -> `reg:5000/team/app` (a registry port is not a
    tag: only a colon after the last slash starts one)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def image_allowed(image: str, allowed: Iterable[str]) -> bool:
    repository = image_repository(image)
    for entry in allowed:
        if entry in (ANY, image, repository):
            return True
        if entry.endswith("/") and repository.startswith(entry) and ".." not in repository:
            return True
    return False


def _listed(value: str, allowed: tuple[str, ...]) -> bool:
    return ANY in allowed or value in allowed


def check(spec: WhatsAppBotSpec, facts: Facts, policy: BotPolicy) -> Refusal | None:
    """The first rule the bot breaks, or None. Messages name the field and what the admin
    allows, never anything of another tenant's or a Secret's content."""
    tenants = allowed_tenants(facts.namespace, facts.tenants)
    if ANY not in tenants and spec.server_name not in tenants:
        where = (f"its annotation {naming.ANNOTATION_TENANTS} allows: "
                 f"{', '.join(sorted(tenants)) or 'none'}" if facts.tenants is not None else
                 f"without the annotation {naming.ANNOTATION_TENANTS} it hosts only the tenant "
                 f"named like it")
        return Refusal("TenantNotAllowed", f"spec.serverName: namespace {facts.namespace} may "
                       f"not host tenant {spec.server_name!r} ({where})")
    if facts.duplicate_of is not None:
        return Refusal(DUPLICATE, f"spec.botId: tenant {spec.server_name!r} already has "
                       f"a bot with this botId in namespace {facts.namespace}: WhatsAppBot "
                       f"{facts.duplicate_of} (their database rows would mix); this one does "
                       f"not run while that one exists")
    for field, name in secret_refs(spec):
        found = facts.secret(name)
        usable = (name not in policy.reserved_secrets and found is not None and found.bot_secret
                  and found.tenant in (None, spec.server_name))
        if not usable:
            # One text whether the Secret is missing, unlabelled or another tenant's: the
            # condition must not tell a tenant which Secrets exist.
            return Refusal("SecretNotAllowed", f"{field}: Secret {name!r} is not available "
                           f"to bots: an admin must label it {naming.LABEL_BOT_SECRET}=true "
                           f"(and {naming.LABEL_TENANT}={spec.server_name}, if it has a "
                           f"tenant label)")
    if spec.image is not None and not image_allowed(spec.image, policy.images):
        return Refusal("ImageNotAllowed", f"spec.image: {spec.image!r} is not an allowed "
                       f"image (allowed: {', '.join(policy.images) or 'the default only'})")
    if (spec.priority_class_name is not None
            and not _listed(spec.priority_class_name, policy.priority_classes)):
        return Refusal("PriorityClassNotAllowed", f"spec.priorityClassName: "
                       f"{spec.priority_class_name!r} is not allowed (allowed: "
                       f"{', '.join(policy.priority_classes) or 'none'})")
    for i, toleration in enumerate(spec.tolerations):
        # A toleration without a key tolerates every taint: only `*` allows that.
        if ANY not in policy.toleration_keys and (
                toleration.key is None or toleration.key not in policy.toleration_keys):
            return Refusal("TolerationNotAllowed", f"spec.tolerations[{i}]: tolerating "
                           f"{toleration.key or 'every taint'!r} is not allowed (allowed "
                           f"keys: {', '.join(policy.toleration_keys) or 'none'})")
    for key in spec.node_selector:
        if not _listed(key, policy.node_selector_keys):
            return Refusal("NodeSelectorNotAllowed", f"spec.nodeSelector: key {key!r} is not "
                           f"allowed (allowed: {', '.join(policy.node_selector_keys) or 'none'})")
    return None
