"""The chart's gateway.console value: the console's settings, its session key and the RBAC
it needs appear with it and only with it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.packaging.conftest import ALL_VALUES, find, helm, render, template_args

GATEWAY = "wabot-wabot-operator-gateway"
ON = {"gateway.enabled": "true", "gateway.console.enabled": "true"}


def _env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deploy = find(objects, "Deployment", GATEWAY)
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _bot_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = find(objects, "ClusterRole", GATEWAY)["rules"]
    return rules


def test_console_off_adds_nothing() -> None:
    objects = render(ALL_VALUES)
    assert "WABOT_GATEWAY_CONSOLE" not in _env(objects)
    assert not [o for o in objects if "console" in o["metadata"]["name"]
                or o["metadata"]["name"].endswith("auth-delegator")]
    assert {"apiGroups": ["wabot.io"], "resources": ["whatsappbots"], "verbs": ["get"]} in \
        _bot_rules(objects)


def test_console_on_gets_its_key_settings_and_rbac() -> None:
    objects = render(ALL_VALUES, sets=ON)
    env = _env(objects)
    assert env["WABOT_GATEWAY_CONSOLE"] == "true"
    assert env["WABOT_GATEWAY_CONSOLE_SECRET"] == {
        "secretKeyRef": {"name": f"{GATEWAY}-console", "key": "secret"}}
    secret = find(objects, "Secret", f"{GATEWAY}-console")
    assert len(secret["data"]["secret"]) >= 48
    delegator = find(objects, "ClusterRoleBinding", f"{GATEWAY}-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"] == [{"kind": "ServiceAccount", "name": GATEWAY,
                                      "namespace": "wabot-system"}]
    rules = _bot_rules(objects)
    assert {"apiGroups": ["wabot.io"], "resources": ["whatsappbots"],
            "verbs": ["get", "list", "watch", "patch"]} in rules
    assert {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "create"]} in rules
    # Still nothing on Secrets beyond what the send API had.
    assert not [r for r in rules if "secrets" in r["resources"]]


def test_an_existing_secret_replaces_the_generated_one() -> None:
    objects = render(ALL_VALUES, sets={**ON, "gateway.console.existingSecret": "my-key"})
    assert _env(objects)["WABOT_GATEWAY_CONSOLE_SECRET"]["secretKeyRef"]["name"] == "my-key"
    assert not [o for o in objects if o["kind"] == "Secret"
                and o["metadata"]["name"].endswith("-console")]


@pytest.mark.parametrize("hours", ["0", "500"])
def test_session_hours_out_of_range_are_refused(hours: str) -> None:
    args = template_args(ALL_VALUES, sets={**ON, "gateway.console.sessionHours": hours})
    assert helm(*args, check=False).returncode != 0
