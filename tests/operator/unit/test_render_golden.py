"""Golden files: every object a bot owns, rendered from the repo's operator/bot-templates/ for a few
representative specs, compared exactly with tests/operator/unit/golden/<case>.yaml.

The field-by-field tests in test_render.py say why each rule holds; these say what the whole
of a render is, so any change to a pod, PVC, Role or Lease shows up as a diff to review. After
an intended change, regenerate them and read the diff before committing:

    WABOT_UPDATE_GOLDEN=1 scripts/test.sh tests/operator/unit/test_render_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from wabot_operator.specs.bot import BotRef, RenderDefaults, ServiceAccountRef
from wabot_operator.specs.children import Children, render_children
from wabot_operator.templates import load_templates

from wabot.spec import SecretKeyRef, WhatsAppBotSpec

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("WABOT_UPDATE_GOLDEN") == "1"
BOT = BotRef(name="sales", namespace="tenant-a", uid="0b5e3c1e-1111-2222-3333-444455556666")
DEFAULTS = RenderDefaults(worker_image="registry.example/wabot-worker:1.2.3")

AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}

# name -> (spec fields, operator defaults)
CASES: dict[str, tuple[dict[str, Any], RenderDefaults]] = {
    "default": ({}, DEFAULTS),
    "full": ({
        "botId": "sales-bot",
        "image": "registry.example/wabot-worker:2.0.0",
        "database": {"secretRef": {"name": "acme-dsn", "key": "url"}},
        "webhook": {"url": "https://hooks.example/x", "secretRef": {"name": "acme-hook"}},
        "proxy": {"secretRef": {"name": "acme-proxy", "key": "url"}},
        "env": [{"name": "LOG_LEVEL", "value": "debug"}],
        "resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "512Mi"}},
        "storage": {"size": "1Gi", "storageClassName": "fast-ssd", "retainPolicy": "Delete"},
        "nodeSelector": {"pool": "bots"},
        "tolerations": [{"key": "bots", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": AFFINITY,
        "priorityClassName": "bots-high",
    }, DEFAULTS),
    "suspended": ({"suspend": True}, DEFAULTS),
    "operator-defaults": ({}, RenderDefaults(
        worker_image="registry.example/wabot-worker:1.2.3",
        database_secret=SecretKeyRef(name="wabot-db", key="dsn-{serverName}"),
        gateway_service_account=ServiceAccountRef("wabot-system", "wabot-gateway"),
        storage_class="standard",
        worker_env=(("WABOT_WEBHOOK_ALLOW_CIDRS", "10.0.0.0/8"),))),
}


def rendered_text(children: Children) -> str:
    """The objects in the order the apply layer sends them (the Secret without its random
    token), then the pod; a suspended bot has no pod, only its hash."""
    objects = [*children.supporting(), children.api_secret]
    if children.pod is not None:
        objects.append(children.pod)
    header = f"# pod spec hash: {children.pod_hash}\n"
    return header + yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden_file(case: str) -> None:
    fields, defaults = CASES[case]
    spec = WhatsAppBotSpec.model_validate({"serverName": "acme", **fields})
    text = rendered_text(render_children(BOT, spec, defaults,
                                         load_templates(REPO / "operator" / "bot-templates")))
    path = GOLDEN / f"{case}.yaml"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with WABOT_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), (
        f"{case}: the render differs from {path.name}; if intended, regenerate with "
        "WABOT_UPDATE_GOLDEN=1 scripts/test.sh tests/operator/unit/test_render_golden.py and "
        "review the diff")
