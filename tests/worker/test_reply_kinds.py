"""Plugins and the spec's custom commands answer with any kind of message (issue 24): the real
pipeline runs the command, the context's reply helpers go through the same rate-limited sender
as the API, and neonize's own builders make the messages (recorded at send_message/upload)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from botworker.core.context import CommandContext
from botworker.core.registry import CommandRegistry
from tests.support import media_files as files
from tests.worker.conftest import Harness, wait_for
from wabot.spec import WhatsAppBotSpec


def _kinds(ctx: CommandContext) -> str | None:
    what = ctx.args[0] if ctx.args else ""
    if what == "image":
        ctx.reply_image(files.png(), "a red square")
    elif what == "voice":
        ctx.reply_voice(files.ogg_opus())
    elif what == "document":
        ctx.reply_document(files.pdf(), "terms.pdf", caption="the terms")
    elif what == "sticker":
        ctx.reply_sticker(files.webp_sticker())
    elif what == "location":
        ctx.reply_location(48.8584, 2.2945, "Tour Eiffel")
    elif what == "contact":
        ctx.reply_contact("Support", "+4915112345678")
    elif what == "poll":
        ctx.reply_poll("Best day?", ["Mon", "Fri"], multiple=True)
    elif what == "react":
        ctx.react("🔥")
    elif what == "bad":
        ctx.reply_image(files.pdf())  # not an image: refused, nothing sent
        return "after the bad image"
    return None


def register(registry: CommandRegistry) -> None:
    registry.command("kinds", _kinds, description="answers with any kind")


PLUGIN = EntryPoint(name="kinds", value="tests.worker.test_reply_kinds:register",
                    group="wabot.plugins")


def spec(**commands: Any) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": "tenant-a", "botId": "bot-a",
                                           "commands": commands})


def answer(h: Harness, text: str) -> tuple[Any, Any]:
    """The one message sent in answer to `text`, and the command's event."""
    before = len(h.client.sent)
    ev = h.say(text)
    wait_for(lambda: len(h.client.sent) > before, timeout=15.0, what=f"an answer to {text}")
    h.settle()
    assert len(h.client.sent) == before + 1
    return h.client.sent[-1][1], ev


@pytest.fixture
def bot(make_worker: Callable[..., Harness]) -> Harness:
    return make_worker(spec(plugins=["kinds"]), plugins=[PLUGIN])


def test_a_plugin_replies_with_media_quoting_the_command(bot: Harness) -> None:
    msg, ev = answer(bot, "!kinds image")
    assert msg.imageMessage.caption == "a red square"
    assert msg.imageMessage.contextInfo.stanzaID == ev.Info.ID
    assert msg.imageMessage.contextInfo.quotedMessage.conversation == "!kinds image"
    assert bot.client.uploads[-1] == files.png()
    msg, _ = answer(bot, "!kinds voice")
    assert msg.audioMessage.PTT and msg.audioMessage.seconds == 2
    msg, _ = answer(bot, "!kinds document")
    assert (msg.documentMessage.fileName, msg.documentMessage.caption) == ("terms.pdf",
                                                                           "the terms")
    msg, _ = answer(bot, "!kinds sticker")
    assert msg.stickerMessage.mimetype == "image/webp"


def test_a_plugin_replies_with_location_contact_poll_and_reactions(bot: Harness) -> None:
    msg, _ = answer(bot, "!kinds location")
    assert msg.locationMessage.name == "Tour Eiffel"
    msg, _ = answer(bot, "!kinds contact")
    assert "waid=4915112345678" in msg.contactMessage.vcard
    msg, _ = answer(bot, "!kinds poll")
    assert msg.pollCreationMessage.selectableOptionsCount == 0
    msg, ev = answer(bot, "!kinds react")
    assert msg.reactionMessage.text == "🔥" and msg.reactionMessage.key.ID == ev.Info.ID
    assert bot.metric("wabot_sends_total", type="reaction", result="sent") == 1


def test_a_file_that_fails_the_checks_is_not_sent_and_the_handler_goes_on(bot: Harness) -> None:
    msg, _ = answer(bot, "!kinds bad")
    assert msg.extendedTextMessage.text == "after the bad image"
    assert bot.client.uploads == []
    assert bot.metric("wabot_sends_total", type="image", result="invalid") == 1


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = {"/logo.png": files.png(), "/menu.pdf": files.pdf()}.get(self.path)
        self.send_response(200 if data else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_custom_commands_answer_with_an_image_a_document_and_a_location(
        make_worker: Callable[..., Harness], file_server: str) -> None:
    h = make_worker(spec(custom=[
        {"name": "logo", "image": {"url": f"{file_server}/logo.png", "caption": "our logo"}},
        {"name": "menu", "response": "Today's menu:",
         "document": {"url": f"{file_server}/menu.pdf", "fileName": "menu.pdf"}},
        {"name": "where", "location": {"latitude": "52.52", "longitude": "13.405",
                                       "name": "Office"}},
        {"name": "hi", "response": "hello"},
    ]), env={"WABOT_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32"})
    msg, ev = answer(h, "!logo")
    assert msg.imageMessage.caption == "our logo"
    assert msg.imageMessage.contextInfo.stanzaID == ev.Info.ID
    before = len(h.client.sent)
    h.say("!menu")
    wait_for(lambda: len(h.client.sent) == before + 2, timeout=15.0, what="text + document")
    assert h.client.sent[before][1].extendedTextMessage.text == "Today's menu:"
    assert h.client.sent[before + 1][1].documentMessage.fileName == "menu.pdf"
    msg, _ = answer(h, "!where")
    assert msg.locationMessage.name == "Office"
    assert h.ask("!hi") == "hello"


def test_a_custom_commands_url_is_under_the_egress_policy(
        make_worker: Callable[..., Harness], file_server: str) -> None:
    h = make_worker(spec(custom=[
        {"name": "logo", "response": "here it is",
         "image": {"url": f"{file_server}/logo.png"}}]))
    msg, _ = answer(h, "!logo")  # the text goes; the loopback image is refused
    assert msg.extendedTextMessage.text == "here it is"
    assert h.client.uploads == []
    assert h.metric("wabot_sends_total", type="image", result="invalid") == 1


def test_a_custom_command_needs_an_answer() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs a response, image, document or location"):
        spec(custom=[{"name": "empty"}])
    with pytest.raises(ValidationError):
        spec(custom=[{"name": "x", "image": {"url": "file:///etc/passwd"}}])
