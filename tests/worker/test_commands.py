"""Commands as a WhatsApp user sees them: real MessageEv protobufs through neonize's real
dispatcher, replies captured at `send_message` (the only seam)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from wabot.bot_commands import CommandsSpec, CustomCommand
from wabot.spec import SettingsSpec, WhatsAppBotSpec

from .conftest import Harness, wait_for

Make = Callable[..., Harness]


def spec(tenant: str = "tenant-a", bot: str = "bot-a", **kw: object) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": tenant, "botId": bot, **kw})


def test_ping_answers_in_the_chat_quoting_the_command(make_worker: Make) -> None:
    h = make_worker()
    reply = h.ask("!ping", chat="15550001111")
    assert reply.startswith("pong")
    assert h.client.replies()[0][0] == "15550001111"
    assert h.metric("wabot_commands_total", command="ping", result="ok") == 1
    assert h.metric("wabot_messages_sent_total") == 1


def test_help_lists_enabled_commands_and_custom_ones(make_worker: Make) -> None:
    h = make_worker(
        spec(commands={"custom": [{"name": "hours", "aliases": ["open"], "response": "9-5",
                                   "description": "opening hours"}]})
    )
    text = h.ask("!help")
    assert "!ping" in text and "!info" in text
    assert "!hours (!open) - opening hours" in text
    assert h.ask("!menu") == text


def test_info_names_the_bot_and_tenant(make_worker: Make) -> None:
    h = make_worker(bot="shop-bot", tenant="acme")
    text = h.ask("!info")
    assert "Bot shop-bot (acme)" in text
    assert "state: Connected" in text


def test_custom_reply_and_alias_case_insensitive(make_worker: Make) -> None:
    h = make_worker(
        spec(commands={"prefix": "#", "custom": [{"name": "hours", "aliases": ["open"],
                                                   "response": "We open at 9."}]})
    )
    assert h.ask("#hours") == "We open at 9."
    assert h.ask("#OPEN") == "We open at 9."
    # The default prefix is not this bot's prefix: no reply at all.
    before = len(h.client.sent)
    h.say("!hours")
    h.settle()
    assert len(h.client.sent) == before


def test_disabled_builtins_are_unknown(make_worker: Make) -> None:
    h = make_worker(spec(commands={"builtins": ["help"]}))
    assert h.ask("!ping") == "Unknown command !ping. Send !help for the list."
    assert h.metric("wabot_commands_total", command="unknown", result="unknown_command") == 1


def test_plain_text_is_ignored(make_worker: Make) -> None:
    h = make_worker()
    h.say("hello there")
    h.say("! ping")  # a prefix followed by a space is not a command
    h.settle()
    assert h.client.sent == []
    assert h.metric("wabot_messages_received_total") == 2


def test_own_messages_groups_and_duplicates_are_filtered(make_worker: Make) -> None:
    h = make_worker()
    h.say("!ping", from_me=True)
    h.say("!ping", group=True, chat="120363000000000001", sender="15550002222")
    h.say("!ping", chat="status", server="broadcast")
    ev = h.say("!ping", msg_id="DUPLICATE1")
    h.feed(ev)  # WhatsApp redelivers: same chat, same id
    h.settle()
    assert len(h.client.sent) == 1
    assert h.metric("wabot_messages_dropped_total", reason="own_message") == 1
    assert h.metric("wabot_messages_dropped_total", reason="group") == 1
    assert h.metric("wabot_messages_dropped_total", reason="broadcast") == 1
    assert h.metric("wabot_messages_dropped_total", reason="duplicate") == 1


def test_groups_answered_when_settings_allow(make_worker: Make) -> None:
    h = make_worker(spec(settings={"ignoreGroups": False}))
    reply = h.ask("!ping", group=True, chat="120363000000000001", sender="15550002222")
    assert reply.startswith("pong")
    # Unknown commands are not answered in groups (other bots there use the same prefix).
    h.say("!other-bots-command", group=True, chat="120363000000000001", sender="15550002222")
    h.settle()
    assert len(h.client.sent) == 1


def test_plugin_from_entry_point_and_argument_quoting(make_worker: Make, plugin_path: Path) -> None:
    h = make_worker(spec(commands={"plugins": ["echo"]}))
    assert h.ask('!echo one "two words" \'three four\'') == "args=one|two words|three four"
    assert h.ask("!say x") == "args=x"


def test_plugins_are_per_bot(make_worker: Make, plugin_path: Path) -> None:
    a = make_worker(spec(commands={"plugins": ["echo"]}), bot="bot-a")
    b = make_worker(spec(bot="bot-b"), bot="bot-b")
    assert a.ask("!echo hi") == "args=hi"
    assert b.ask("!echo hi") == "Unknown command !echo. Send !help for the list."
    assert "echo" in a.worker.runtime.registry
    assert "echo" not in b.worker.runtime.registry
    assert "!echo" not in b.ask("!help")


def test_plugins_from_an_explicit_entry_point_list(make_worker: Make, plugin_path: Path) -> None:
    eps = [EntryPoint("ctx", "wabot_test_plugins:register_context", "wabot.plugins")]
    h = make_worker(spec(commands={"plugins": ["ctx"]}, features={"beta": True}), plugins=eps)
    assert h.ask("!ctx", chat="15550003333") == (
        "bot=bot-a tenant=tenant-a chat=15550003333@s.whatsapp.net groups=True beta=True"
    )


def test_broken_or_missing_plugins_leave_the_bot_running(
    make_worker: Make, plugin_path: Path
) -> None:
    h = make_worker(spec(commands={"plugins": ["broken", "not-installed", "echo"]}))
    registry = h.worker.runtime.registry
    assert "half" not in registry  # a plugin that fails in register() adds nothing
    assert "echo" in registry
    assert h.ask("!ping").startswith("pong")


def test_handler_exception_is_answered_counted_and_logged(
    make_worker: Make, plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = make_worker(spec(commands={"plugins": ["boom"]}))
    with caplog.at_level(logging.ERROR, logger="wabot.worker.pipeline"):
        assert h.ask("!boom") == "Sorry, that command failed."
    assert h.metric("wabot_commands_total", command="boom", result="error") == 1
    failures = [r for r in caplog.records if r.getMessage() == "command handler failed"]
    assert failures and failures[0].exc_info is not None
    assert vars(failures[0])["command"] == "boom"
    # ...and the bot carries on.
    assert h.ask("!ping").startswith("pong")


def test_log_lines_are_json_with_bot_and_tenant(tmp_path: Path) -> None:
    import io

    from botworker.logs import configure_logging, get_logger

    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("bot-x", "tenant-x", "INFO", stream=out)
        get_logger("test").warning("hello", extra={"command": "ping"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["bot"] == "bot-x" and line["server_name"] == "tenant-x"
    assert line["msg"] == "hello" and line["command"] == "ping" and line["level"] == "warning"


def test_send_failure_is_counted_not_fatal(make_worker: Make) -> None:
    h = make_worker()
    h.client.fail_sends = True
    h.say("!ping")
    h.settle()
    assert h.metric("wabot_messages_dropped_total", reason="send_failed") == 1
    h.client.fail_sends = False
    assert h.ask("!ping").startswith("pong")


def test_spec_change_applies_without_restart(make_worker: Make, plugin_path: Path) -> None:
    h = make_worker()
    assert h.ask("!hours") == "Unknown command !hours. Send !help for the list."
    new = spec(
        commands=CommandsSpec(
            prefix="?", custom=[CustomCommand(name="hours", response="9-5")], plugins=["echo"]
        ).model_dump(by_alias=True),
        settings=SettingsSpec(ignore_groups=False).model_dump(by_alias=True),
    )
    h.worker.apply_spec(new)
    assert h.ask("?hours") == "9-5"
    assert h.ask("?echo a b") == "args=a|b"
    assert h.ask("?ping", group=True, chat="120363000000000009", sender="1555").startswith("pong")
    assert h.metric("wabot_spec_reloads_total", result="applied") == 1


def test_spec_file_changes_reach_the_running_worker(tmp_path: Path) -> None:
    """The file source (Compose, a mounted ConfigMap): edit the file, the next message uses it;
    a spec for another tenant is refused and the running one stays."""
    from botworker.adapters.spec_source import FileSpecWatcher

    from .conftest import worker_config

    path = tmp_path / "bot.yaml"
    path.write_text("serverName: tenant-a\nbotId: bot-a\n")
    cfg = worker_config(tmp_path, "bot-a", "tenant-a")
    applied: list[WhatsAppBotSpec] = []
    watcher = FileSpecWatcher(path, cfg, applied.append, interval_s=0.05)
    watcher.start()
    try:
        path.write_text(
            "apiVersion: wabot.io/v1alpha1\nkind: WhatsAppBot\nmetadata: {name: bot-a}\n"
            "spec:\n  serverName: tenant-a\n  commands:\n    prefix: '?'\n"
        )
        wait_for(lambda: applied, what="the changed spec")
        assert applied[-1].commands.prefix == "?"
        path.write_text("serverName: tenant-b\nbotId: bot-a\nsettings: {ignoreGroups: false}\n")
        wait_for(lambda: watcher.rejected == 1, what="the foreign spec to be rejected")
        assert len(applied) == 1
    finally:
        watcher.stop()


def test_audit_rows_go_to_the_sqlite_file_on_the_bots_volume_by_default(
    make_worker: Make,
) -> None:
    import sqlite3

    h = make_worker()
    h.ask("!ping")
    h.ask("!nope")
    db = h.worker.cfg.session_dir / "wabot.sqlite3"

    def stored() -> list[tuple[str, str, str]]:
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            try:
                return conn.execute(
                    "SELECT server_name, command, result FROM audit_entry ORDER BY created_at"
                ).fetchall()
            except sqlite3.OperationalError:
                return []

    wait_for(lambda: len(stored()) == 2, timeout=30, what="two audit rows")
    assert stored() == [("tenant-a", "ping", "ok"), ("tenant-a", "nope", "unknown_command")]
    assert h.metric("wabot_db_up") == 1


def test_auto_read_sends_receipts_only_when_enabled(make_worker: Make) -> None:
    on = make_worker(spec(settings={"autoRead": True}), bot="bot-a")
    on.ask("!ping", msg_id="READ-ME")
    on.say("just chatting", msg_id="READ-ME-TOO")
    on.say("mine", msg_id="NOT-MINE-TO-READ", from_me=True)
    on.settle()
    assert on.client.read == ["READ-ME", "READ-ME-TOO"]
    off = make_worker(spec(bot="bot-b"), bot="bot-b")
    off.ask("!ping")
    assert off.client.read == []


def test_incoming_calls_are_rejected_when_configured(make_worker: Make) -> None:
    from neonize.events import CallOfferEv
    from neonize.proto.Neonize_pb2 import BasicCallMeta
    from neonize.utils import build_jid

    def call(call_id: str) -> object:
        return CallOfferEv(basicCallMeta=BasicCallMeta(
            **{"from": build_jid("15550007777")}, timestamp=int(time.time()),
            callCreator=build_jid("15550007777"), callID=call_id))

    rejecting = make_worker(spec(settings={"rejectCalls": True}), bot="bot-a")
    rejecting.feed(call("CALL-1"))
    wait_for(lambda: rejecting.client.rejected, what="the call to be rejected")
    assert rejecting.client.rejected == [("15550007777", "CALL-1")]
    ringing = make_worker(spec(bot="bot-b"), bot="bot-b")
    ringing.feed(call("CALL-2"))
    ringing.settle()
    assert ringing.client.rejected == []
