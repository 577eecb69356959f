"""The bots file is the same YAML users `kubectl apply`; these are the mistakes it must catch
with a message that says where."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.botsfile import BotsFileError, dump_bots, load_bots_file, parse_documents
from wabot.spec import DEFAULT_RESOURCES

REPO = Path(__file__).resolve().parents[2]

TWO = """
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: sales, namespace: acme}
spec:
  serverName: acme
  commands: {prefix: "#"}
---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: support}
spec:
  serverName: acme
  botId: helpdesk
---
"""


def test_multi_document_file_is_read_with_defaults_from_the_models() -> None:
    bots = parse_documents(TWO, "bots.yaml")
    assert [b.name for b in bots] == ["sales", "support"]
    assert bots[0].namespace == "acme" and bots[0].spec.commands.prefix == "#"
    assert bots[0].bot_id == "sales"  # botId defaults to metadata.name
    assert bots[1].bot_id == "helpdesk"
    # Unset resources mean "the platform default", resolved where the bot is run.
    assert bots[1].spec.resources.limits.memory is None
    assert bots[1].spec.resources.over(DEFAULT_RESOURCES).limits.memory == "240Mi"


def test_error_names_file_document_and_field_path() -> None:
    bad = TWO.replace('prefix: "#"', 'prefx: "#"')
    with pytest.raises(BotsFileError) as err:
        parse_documents(bad, "bots.yaml")
    msg = str(err.value)
    assert "bots.yaml: document 1 (line 2)" in msg
    assert "spec.commands.prefx" in msg


def test_nested_list_errors_carry_the_index() -> None:
    bad = TWO.replace('commands: {prefix: "#"}',
                      "commands: {custom: [{name: hi, response: ok}, {name: 'bad name!', "
                      "response: x}]}")
    with pytest.raises(BotsFileError, match=r"spec\.commands\.custom\[1\]\.name"):
        parse_documents(bad, "f")


def test_wrong_kind_and_non_mapping_documents_are_refused() -> None:
    with pytest.raises(BotsFileError, match="kind"):
        parse_documents(TWO.replace("kind: WhatsAppBot", "kind: Pod", 1))
    with pytest.raises(BotsFileError, match="expected a mapping"):
        parse_documents("- a\n- b\n")
    with pytest.raises(BotsFileError, match="not valid YAML"):
        parse_documents("a: [\n")


def test_reserved_env_and_cross_field_rules_come_from_the_shared_models() -> None:
    with pytest.raises(BotsFileError, match="BOT_ID"):
        parse_documents(TWO.replace("botId: helpdesk", "env: [{name: BOT_ID, value: x}]"))
    with pytest.raises(BotsFileError, match="phoneNumber"):
        parse_documents(TWO.replace("botId: helpdesk", "pairing: {method: code}"))



@pytest.mark.parametrize(("line", "path", "got"), [
    ('suspend: "yes"', "spec.suspend", "a string (write true or false without quotes)"),
    ('suspend: "false"', "spec.suspend", "a string (write true or false without quotes)"),
    ("suspend: 1", "spec.suspend", "an integer"),
    ('rateLimit: {perChatPerMinute: "20"}', "spec.rateLimit.perChatPerMinute",
     "a string (write the number without quotes)"),
    ("rateLimit: {perChatPerMinute: true}", "spec.rateLimit.perChatPerMinute", "a boolean"),
    ("rateLimit: {perBotPerMinute: 20.0}", "spec.rateLimit.perBotPerMinute",
     "a decimal number"),
    ("settings: {ignoreGroups: 0}", "spec.settings.ignoreGroups", "an integer"),
    ("settings: {maxMessageLength: '4096'}", "spec.settings.maxMessageLength", "a string"),
    ("features: {beta: 1}", "spec.features.beta", "an integer"),
    ('tolerations: [{key: k, operator: Exists, tolerationSeconds: "60"}]',
     "spec.tolerations[0].tolerationSeconds", "a string"),
    ("env: [{name: PIN, value: 1234}]", "spec.env[0].value", "an integer"),
])
def test_wrong_types_are_refused_not_coerced(line: str, path: str, got: str) -> None:
    """pydantic's lax mode turned "20" into 20, "yes", "false" (!) and 1 into booleans and
    true into 1: a file the API server refuses ran without one. The models are strict, and the
    message names the path and what was found."""
    with pytest.raises(BotsFileError) as err:
        parse_documents(TWO.replace("botId: helpdesk", line), "bots.yaml")
    msg = str(err.value)
    assert "bots.yaml: document 2 (line 9)" in msg
    assert f"  {path}: Input should be a valid " in msg and f", got {got}" in msg, msg
    assert "1234" not in msg  # the type is named, never the value


def test_metadata_is_strict_too() -> None:
    with pytest.raises(BotsFileError, match=r"metadata\.labels\.tier: .*got an integer"):
        parse_documents(TWO.replace("metadata: {name: support}",
                                    "metadata: {name: support, labels: {tier: 1}}"))


def test_plain_yaml_scalars_are_exact_types_and_accepted() -> None:
    """What a user writes without quotes is already the right type (YAML 1.1's yes/no/on/off
    included, as kubectl reads them too)."""
    (_, bot) = parse_documents(TWO.replace(
        "botId: helpdesk", "suspend: yes\n  rateLimit: {perChatPerMinute: 20}\n"
        "  settings: {ignoreGroups: off, maxMessageLength: 1000}\n  features: {beta: true}\n"
        "  tolerations: [{key: k, operator: Exists, tolerationSeconds: 60}]"))
    assert bot.spec.suspend is True and bot.spec.rate_limit.per_chat_per_minute == 20
    assert bot.spec.settings.ignore_groups is False and bot.spec.features == {"beta": True}
    assert bot.spec.tolerations[0].toleration_seconds == 60

def test_duplicate_names_and_shared_sessions_are_refused() -> None:
    with pytest.raises(BotsFileError, match="defined twice"):
        parse_documents(TWO.replace("name: support", "name: sales"))
    with pytest.raises(BotsFileError, match="share serverName 'acme' and botId 'sales'"):
        parse_documents(TWO.replace("botId: helpdesk", "botId: sales"))


def test_a_cluster_export_list_with_status_is_accepted() -> None:
    export = """
apiVersion: v1
kind: List
items:
- apiVersion: wabot.io/v1alpha1
  kind: WhatsAppBot
  metadata: {name: a, namespace: x, uid: 123, resourceVersion: "9", generation: 2}
  spec: {serverName: t1}
  status: {phase: Connected}
"""
    (bot,) = parse_documents(export)
    assert bot.name == "a" and bot.server_name == "t1"


def test_dump_round_trips_what_the_user_wrote() -> None:
    bots = parse_documents(TWO)
    again = parse_documents(dump_bots(bots))
    assert [(b.name, b.spec) for b in again] == [(b.name, b.spec) for b in bots]
    assert "rateLimit" not in dump_bots(bots)  # defaults stay implicit


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BotsFileError, match="cannot read"):
        load_bots_file(tmp_path / "nope.yaml")


def test_the_sample_bots_file_is_valid() -> None:
    bots = load_bots_file(REPO / "samples" / "bots.yaml")
    assert len(bots) >= 3
    assert len({b.server_name for b in bots}) >= 2  # shows more than one tenant
