"""What this replica manages: the namespaces its patterns name (kopf's globs, resolved the
way kopf resolves them), the bots and pods in them listed before kopf's watches start, and
the peering object that keeps two replicas from acting at once."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wabot import naming
from wabot_operator.config import OperatorConfig
from wabot_operator.identities import IdentityBook
from wabot_operator.kube import Kube
from wabot_operator.observe import observe_pod
from wabot_operator.podbook import PodBook

log = logging.getLogger("wabot_operator")


def match_namespace(name: str, pattern: str) -> bool:
    """Whether kopf, given `pattern` as one of its namespaces, serves namespace `name`.

    kopf's syntax: comma-separated globs (`*`, `?`, `[...]`; spaces around them ignored), a
    `!` glob excludes, and a pattern that starts with an exclusion starts from "every
    namespace". Read left to right: the first glob decides the initial match; an exclusion
    drops a match; a later inclusion brings back only a namespace that the first glob had
    matched (so `a-*, !*-pr-*, *-pr-1` serves `a-pr-1` but not `b-pr-1`).
    """
    globs = [g.strip() for g in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    initially = fnmatch.fnmatchcase(name, globs[0])
    served = initially
    for g in globs[1:]:
        if g.startswith("!"):
            served = served and not fnmatch.fnmatchcase(name, g.lstrip("!"))
        elif initially and fnmatch.fnmatchcase(name, g):
            served = True
    return served


def literal_namespaces(namespaces: Iterable[str]) -> list[str]:
    return [ns for ns in namespaces if not any(c in ns for c in "*?[]!")]


def namespaces_now(kube: Kube, patterns: tuple[str, ...]) -> list[str | None]:
    """Where to list: the whole cluster (None), the literal namespaces, or the namespaces that
    kopf's globs match now (kopf resolves them the same way)."""
    if not patterns:
        return [None]
    literal = literal_namespaces(patterns)
    if len(literal) == len(patterns):
        return list(literal)
    names = [ns["metadata"]["name"] for ns in kube.list_all("Namespace", None, "")]
    return [name for name in names if any(match_namespace(name, p) for p in patterns)]


def fill_pod_book(kube: Kube, patterns: tuple[str, ...], book: PodBook) -> None:
    """Every bot pod the operator will watch, listed a page at a time before kopf's watches
    start, so that a restarted operator's first pass for each bot knows its pod."""
    for namespace in namespaces_now(kube, patterns):
        for pod in kube.list_all("Pod", namespace, naming.LABEL_BOT):
            meta = pod["metadata"]
            book.listed(meta["namespace"], meta["labels"][naming.LABEL_BOT], observe_pod(pod))


def fill_identities(kube: Kube, patterns: tuple[str, ...], book: IdentityBook) -> None:
    """Every bot's identity before any pass, so that of two bots of one identity the second
    never runs for a moment after a restart (identities.py). Only the identities are kept."""
    for namespace in namespaces_now(kube, patterns):
        for bot in kube.list_all("WhatsAppBot", namespace, ""):
            book.seen(bot)


def ensure_peering(api_client: client.ApiClient, config: OperatorConfig) -> None:
    """Create the peering object(s) this replica will use: kopf only detects them, and a
    missing one silently means no peering, i.e. two replicas acting at once."""
    custom = client.CustomObjectsApi(api_client)
    body: dict[str, Any] = {"apiVersion": "kopf.dev/v1", "metadata": {"name": config.peering_name}}
    try:
        if config.clusterwide:
            custom.create_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"})
        else:
            for ns in literal_namespaces(config.namespaces):
                try:
                    custom.create_namespaced_custom_object(
                        "kopf.dev", "v1", ns, "kopfpeerings", {**body, "kind": "KopfPeering"})
                except ApiException as e:
                    if e.status != 409:
                        raise
    except ApiException as e:
        if e.status != 409:
            log.warning("could not create the peering object %s: %s %s",
                        config.peering_name, e.status, e.reason)
