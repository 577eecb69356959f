"""Names and labels of everything that belongs to one bot, in one place.

The operator renders objects with these names, the worker finds its Lease and status by them,
and the tiers without Kubernetes lay out auth directories the same way, so a bot moved between
tiers keeps its session.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# The CRD's API group, the root of every name below. Defined here, where the names are:
# wabot/spec.py takes it from here (and the generated spec_view.py from spec.py), so the
# operator does not load spec_view.py (~0.4 MiB) for one string, nor the worker pydantic.
API_GROUP = "wabot.io"

LABEL_BOT = f"{API_GROUP}/bot"
LABEL_SERVER = f"{API_GROUP}/server"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
FINALIZER = f"{API_GROUP}/finalizer"
ANNOTATION_POD_HASH = f"{API_GROUP}/pod-spec-hash"

# The admin's side of the tenant boundary (README "Security model"). On a Namespace: the
# serverNames (comma list, or `*`) whose bots it may host; without it, only the serverName
# equal to the namespace's name. On a Secret: `true` lets bots of the namespace name it in
# their spec (database, webhook, proxy); with LABEL_TENANT as well, only that tenant's bots.
ANNOTATION_TENANTS = f"{API_GROUP}/tenants"
LABEL_BOT_SECRET = f"{API_GROUP}/bot-secret"
LABEL_TENANT = f"{API_GROUP}/tenant"

# Longest WhatsAppBot name: the longest child name ("wabot-" + name + "-auth") stays a label.
MAX_BOT_NAME = 52


def child_name(bot: str) -> str:
    """Pod, ServiceAccount, Role, RoleBinding and Lease of a bot share one fixed name: a second
    pod cannot be created while the first one still exists (the API server answers 409)."""
    return f"wabot-{bot}"


def pvc_name(bot: str) -> str:
    return f"wabot-{bot}-auth"


def api_secret_name(bot: str) -> str:
    """The Secret holding the bot's send-API token (WABOT_API_TOKEN; read by the gateway)."""
    return f"wabot-{bot}-api"


API_TOKEN_KEY = "token"


def bot_labels(bot: str, server_name: str) -> dict[str, str]:
    return {
        LABEL_NAME: "wabot",
        LABEL_COMPONENT: "bot",
        LABEL_MANAGED_BY: "wabot-operator",
        LABEL_BOT: bot,
        LABEL_SERVER: server_name,
    }


def auth_subdir(server_name: str, bot_id: str) -> PurePosixPath:
    """The seed's layout, relative to the auth root: auth/{serverName}/bot_{botId}/."""
    return PurePosixPath("auth") / server_name / f"bot_{bot_id}"
