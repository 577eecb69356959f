"""Invalid WhatsAppBots are refused by the API server itself (schema + CEL), with the field
path in the error, before any operator sees them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually

pytestmark = pytest.mark.cluster


def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as e:
        call()
    body = json.loads(e.value.body)
    return int(e.value.status), str(body["message"])


@pytest.mark.parametrize(("name", "spec", "path", "words"), [
    ("coder", {"pairing": {"method": "code"}}, "spec.pairing.phoneNumber", "required"),
    ("coder2", {"pairing": {"method": "code", "phoneNumber": "+49 151 1234"}},
     "spec.pairing.phoneNumber", "should match"),
    ("enum", {"storage": {"retainPolicy": "Sometimes"}}, "spec.storage.retainPolicy",
     "Unsupported value"),
    ("tenant", {"serverName": "Acme Corp"}, "spec.serverName", "should match"),
    ("limits", {"rateLimit": {"perChatPerMinute": 100000}}, "spec.rateLimit.perChatPerMinute",
     "less than or equal to 600"),
    ("reserved", {"env": [{"name": "BOT_ID", "value": "other"}]}, "spec.env[0].name",
     "set by wabot itself"),
    ("many", {"env": [{"name": f"V{i}"} for i in range(65)]}, "spec.env", "at most 64"),
    ("prefix", {"commands": {"prefix": "!!!!"}}, "spec.commands.prefix", "more than 3"),
    ("unknown-builtin", {"commands": {"builtins": ["help", "rm"]}},
     "spec.commands.builtins[1]", "Unsupported value"),
])
def test_invalid_specs_are_refused_with_the_field_path(
        cluster: Cluster, name: str, spec: dict[str, Any], path: str, words: str) -> None:
    status, message = refused(lambda: cluster.create_bot(name, spec))
    assert status == 422
    assert path in message and words in message, message


def test_a_name_too_long_for_the_children_is_refused(cluster: Cluster) -> None:
    status, message = refused(lambda: cluster.create_bot("b" * 53))
    assert status == 422
    assert "metadata.name: Too long: may not be more than 52" in message  # the field, named
    cluster.create_bot("b" * 52)  # the longest that fits: wabot-<52>-auth is 63 characters


def test_server_name_and_bot_id_are_immutable(cluster: Cluster) -> None:
    cluster.create_bot("fixed", {"botId": "legacy-1"})
    status, message = refused(lambda: cluster.patch_bot("fixed", {"serverName": "other"}))
    assert status == 422 and "spec.serverName" in message and "immutable" in message
    status, message = refused(lambda: cluster.patch_bot("fixed", {"botId": "legacy-2"}))
    assert status == 422 and "spec.botId" in message and "immutable" in message
    status, message = refused(lambda: cluster.patch_bot("fixed", {"botId": None}))
    assert status == 422 and "spec.botId" in message
    # botId defaults to the name: writing the default out changes nothing and is allowed,
    # any other value is refused.
    cluster.create_bot("late")
    cluster.patch_bot("late", {"botId": "late"})
    status, message = refused(lambda: cluster.patch_bot("late", {"botId": "other"}))
    assert status == 422 and "spec.botId" in message
    cluster.create_bot("early")
    status, message = refused(lambda: cluster.patch_bot("early", {"botId": "not-early"}))
    assert status == 422 and "spec.botId" in message
    # Everything else stays editable.
    cluster.patch_bot("fixed", {"commands": {"prefix": "?"}, "suspend": True})


def test_defaults_are_filled_in_by_the_api_server(cluster: Cluster) -> None:
    spec = cluster.create_bot("plain")["spec"]
    assert spec["pairing"] == {"method": "qr"}
    assert spec["commands"]["prefix"] == "!"
    assert spec["storage"] == {"retainPolicy": "Retain"}  # size: the operator's default
    assert spec["resources"] == {"requests": {}, "limits": {}}  # likewise, key by key


def test_kubectl_get_shows_the_printer_columns(kube: Kube, cluster: Cluster,
                                               operator: OperatorProcess) -> None:
    cluster.create_bot("shown")
    eventually(lambda: (cluster.bot("shown").get("status") or {}).get("phase") == "Connecting",
               what="Connecting")
    out = kube.kubectl("get", "wab", "-n", cluster.ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "SERVER", "PHASE", "ACCOUNT", "READY", "AGE"]
    row = out[1].split()
    assert row[:3] == ["shown", "acme", "Connecting"]
    assert row[3] == "False"  # no account column value yet, Ready False
    categories = kube.kubectl("get", "wabot", "-n", cluster.ns, "-o", "name").stdout
    assert "whatsappbot.wabot.io/shown" in categories


def test_wide_output_shows_what_someone_on_call_looks_at(kube: Kube, cluster: Cluster) -> None:
    cluster.create_bot("watched")
    narrow = kube.kubectl("-n", cluster.ns, "get", "wab", "watched").stdout.split("\n")[0]
    wide = kube.kubectl("-n", cluster.ns, "get", "wab", "watched", "-o", "wide").stdout
    header = wide.split("\n")[0].split()
    assert narrow.split() == ["NAME", "SERVER", "PHASE", "ACCOUNT", "READY", "AGE"]
    assert header == [*narrow.split(), "POD", "RESTARTS", "LAST-CONNECTED", "PROBLEM"]
