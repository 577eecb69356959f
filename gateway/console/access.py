"""Who may see and do what in the console.

- A tenant (signed in with its API key, checked exactly as the send API checks it) sees the
  bots whose spec.serverName is its tenant, in the namespaces the gateway serves, with their
  Events, and may act on its own bots' sessions (new QR or pairing code, log out, restart).
  Suspending a bot changes its spec, which belongs to whoever manages the cluster: tenants
  may not.
- A cluster user (signed in with a Kubernetes bearer token, verified with TokenReview) sees and
  does what their own RBAC allows, asked per action with a SubjectAccessReview, as the
  Kubernetes dashboards do: `list whatsappbots` in a namespace (or cluster-wide) to see its
  bots, `list events` for their Events, `patch whatsappbots` to suspend or resume one or to
  ask for a session action (the annotation is a patch of the bot, as with kubectl).

Answers of the API server are cached for a few seconds per (user, question), so a page of
1,000 bots does not ask 1,000 times and a revoked permission takes effect within the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from wabot.console.session import Viewer
from wabot.spec import API_GROUP, PLURAL

log = logging.getLogger("wabot.gateway.console")
_TIMEOUT = (5.0, 10.0)
SAR_TTL_S = 10.0
# Actions and the RBAC verb a cluster user needs on the WhatsAppBot for each (the session
# actions are annotations on it, see actions.py).
SESSION_ACTIONS = ("restart", "pairing", "logout")
ACTION_VERBS = {"suspend": "patch", "resume": "patch", **dict.fromkeys(SESSION_ACTIONS, "patch")}
TENANT_ACTIONS: frozenset[str] = frozenset(SESSION_ACTIONS)


@dataclass(frozen=True)
class Question:
    verb: str
    resource: str
    namespace: str  # "": cluster-wide
    name: str = ""
    group: str = API_GROUP


class Access:
    """TokenReview at sign-in, SubjectAccessReview per question (cached SAR_TTL_S)."""

    def __init__(self, api_client: Any) -> None:
        self._auth = k8s.AuthenticationV1Api(api_client)
        self._authz = k8s.AuthorizationV1Api(api_client)
        self._cache: dict[tuple[str, tuple[str, ...], Question], tuple[bool, float]] = {}

    async def review_token(self, token: str) -> Viewer | None:
        """The user a bearer token belongs to, or None when the API server does not know it."""
        body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
        try:
            review = await asyncio.to_thread(self._auth.create_token_review, body,
                                             _request_timeout=_TIMEOUT)
        except ApiException as exc:
            log.warning("TokenReview failed: HTTP %s", exc.status)
            return None
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        return Viewer(kind="user", name=str(user.username or ""),
                      groups=tuple(user.groups or ()), uid=str(user.uid or ""),
                      extra={k: list(v) for k, v in (user.extra or {}).items()})

    async def allowed(self, viewer: Viewer, q: Question) -> bool:
        if viewer.kind != "user":
            return False
        key = (viewer.name, viewer.groups, q)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[1] < SAR_TTL_S:
            return hit[0]
        attrs = k8s.V1ResourceAttributes(verb=q.verb, group=q.group, resource=q.resource,
                                         namespace=q.namespace or None, name=q.name or None)
        body = k8s.V1SubjectAccessReview(spec=k8s.V1SubjectAccessReviewSpec(
            user=viewer.name, groups=list(viewer.groups), uid=viewer.uid or None,
            extra=viewer.extra or None, resource_attributes=attrs))
        try:
            review = await asyncio.to_thread(self._authz.create_subject_access_review, body,
                                             _request_timeout=_TIMEOUT)
            answer = bool(review.status and review.status.allowed)
        except ApiException as exc:
            log.warning("SubjectAccessReview failed: HTTP %s", exc.status)
            return False  # not cached: the next question asks again
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (answer, now)
        return answer

    async def may_list(self, viewer: Viewer, namespace: str) -> bool:
        """May this user see the bots of `namespace` (cluster-wide list counts)?"""
        return (await self.allowed(viewer, Question("list", PLURAL, "")) or
                await self.allowed(viewer, Question("list", PLURAL, namespace)))

    async def may_see_bot(self, viewer: Viewer, namespace: str, name: str, tenant: str) -> bool:
        if viewer.kind == "tenant":
            return tenant == viewer.name
        return (await self.may_list(viewer, namespace) or
                await self.allowed(viewer, Question("get", PLURAL, namespace, name)))

    async def may_read_events(self, viewer: Viewer, namespace: str, tenant: str) -> bool:
        if viewer.kind == "tenant":
            return tenant == viewer.name
        return await self.allowed(viewer, Question("list", "events", namespace, group=""))

    async def may_act(self, viewer: Viewer, action: str, namespace: str, name: str,
                      tenant: str) -> bool:
        if viewer.kind == "tenant":
            return tenant == viewer.name and action in TENANT_ACTIONS
        verb = ACTION_VERBS.get(action)
        return verb is not None and await self.allowed(
            viewer, Question(verb, PLURAL, namespace, name))
