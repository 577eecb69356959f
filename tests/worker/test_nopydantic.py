"""A worker that started idle and answered every kind of text and database command has not
loaded pydantic (~12 MiB of every bot, bench/PROFILE-density.md "pydantic out of the worker"):
it reads its spec through wabot/spec_view.py and writes its status through wabot/status_view.py,
and the contract's pydantic models load only for an API call or a subscribed webhook event.

The worker runs in a process of its own (the test process has pydantic loaded), started as
`wabot worker` starts it (neonize's lazy layer first), with the real neonize client whose one
network method, send_message, is replaced. Its status reports are checked here against the
operator's pydantic model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.worker.conftest import worker_process_env
from wabot.status import WorkerReport

REPO = Path(__file__).resolve().parents[2]

SPEC = """\
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: bot-1}
spec:
  serverName: acme
  botId: bot-1
  settings: {autoRead: false}
  commands:
    plugins: [notes]
    custom:
      - {name: hello, response: Hello there, description: Greets}
"""

COMMANDS = ("!ping", "!help", "!info", "!hello", "!nosuch", "good morning",
            "!note greeting hi there", "!note greeting")

# The worker as main.py builds it from a spec file; none of tests/worker/conftest.py (which
# imports the pydantic spec model) is imported here.
WORKER = r'''
import ctypes, json, os, sys, time
from botworker import lazydeps

assert lazydeps.install()
from neonize.client import NewClient
from neonize.events import EVENT_TO_INT, ConnectedEv, MessageEv
from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource, SendResponse
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
from neonize.utils import build_jid

from botworker.adapters.spec_source import load_file
from botworker.config import load_config
from botworker.worker import Worker
from wabot.specread import dump


class Offline(NewClient):
    sent = []

    def send_message(self, to, message, *args, **kwargs):  # the seam: WhatsApp's servers
        self.sent.append(message.extendedTextMessage.text or message.conversation)
        return SendResponse(ID=f"S{len(self.sent)}", Timestamp=int(time.time()))


class Reports:
    items = []

    def publish(self, report):
        self.items.append(json.dumps(dump(report)))  # what the status patch carries

    def start(self):
        pass

    def flush(self, timeout_s):
        return True

    def stop(self):
        pass


def message(n, text):
    return MessageEv(Info=MessageInfo(
        MessageSource=MessageSource(Chat=build_jid("15550001111"), Sender=build_jid("15550001111")),
        ID=f"M{n}", Pushname="Tester", Timestamp=int(time.time() * 1000)),
        Message=Message(conversation=text))


def deliver(client, ev):  # as neonize's Go side does: bytes to the real dispatcher
    data = ev.SerializePartialToString()
    buf = ctypes.create_string_buffer(data, len(data))
    client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[type(ev)])


def until(check, what):
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


cfg = load_config(dict(os.environ))
spec = load_file(cfg.spec_source.path, cfg)
cfg.session_dir.mkdir(parents=True, exist_ok=True)
reports = Reports()
worker = Worker(cfg, spec, client=Offline(str(cfg.session_path)), sessions_enabled=False,
                terminal=False, reporter=reports)
worker.start()
until(lambda: worker.datalayer.schema_ready, "the schema")
deliver(worker.client, ConnectedEv(status=True))
until(lambda: worker.ready()[0], "ready")
idle = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))
for n, text in enumerate(json.loads(sys.argv[1]), start=1):
    deliver(worker.client, message(n, text))
    until(lambda: worker.metrics.value("wabot_messages_received_total") >= n, text)
until(lambda: any("hi there" in t for t in Offline.sent[-1:]), f"the note: {Offline.sent}")
worker.stop(5.0)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")
                or m in ("wabot.spec", "wabot.status", "wabot.events", "wabot.api",
                         "wabot.account"))
print(json.dumps({"idle": idle, "loaded": loaded, "sent": Offline.sent,
                  "reports": reports.items}))
'''


def _worker(tmp_path: Path, spec: str, code: str, *args: str,
            **env_extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bot.yaml"
    path.write_text(spec)
    env = worker_process_env(tmp_path, BOT_ID="bot-1", SERVER_NAME="acme", HTTP_PORT="0",
                             HTTP_HOST="127.0.0.1", WABOT_SPEC_SOURCE=f"file:{path}",
                             WABOT_API_TOKEN="t" * 32, **env_extra)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def test_a_worker_that_answered_every_kind_of_command_has_not_loaded_pydantic(
        tmp_path: Path) -> None:
    proc = _worker(tmp_path, SPEC, WORKER, json.dumps(COMMANDS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["idle"] == []
    assert got["loaded"] == []
    sent = got["sent"]
    assert sent[0].startswith("pong"), sent
    assert "Hello there" in sent and any("!hello - Greets" in t for t in sent)
    assert any(t.startswith("Unknown command !nosuch") for t in sent)
    assert sent[-1].endswith("hi there")  # !note: the database command, read back
    # What the worker wrote is what the operator's model reads.
    states = [WorkerReport.model_validate_json(r).state.value for r in got["reports"]]
    assert states[0] == "Starting" and states[-1] == "Stopped", states


def test_a_spec_file_it_cannot_read_stops_it_with_one_line(tmp_path: Path) -> None:
    bad = SPEC.replace("plugins: [notes]", "plugins: notes")
    proc = _worker(tmp_path, bad, "import sys; from botworker.main import run; "
                   "sys.exit(run([]))")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == ("wabot worker: invalid spec: spec.commands.plugins: "
                                   "expected a list, got a string")


HOOK_KEY = "whsec-0123456789-abcdefghij-SIGNING"
HOOK_EVENTS = ["message", "command", "message.reaction", "message.edited", "message.revoked",
               "connection", "session.status"]

# The same worker, with a webhook to a receiver on loopback: messages of every common kind (a
# media message described from its metadata, spec.media.download "metadata"), their events
# built (wabot/event_view.py) and delivered, signed.
WEBHOOK_WORKER = WORKER.split("cfg = load_config")[0] + r'''
from tests.support import wamessages as wa

cfg = load_config(dict(os.environ))
spec = load_file(cfg.spec_source.path, cfg)
cfg.session_dir.mkdir(parents=True, exist_ok=True)
worker = Worker(cfg, spec, client=Offline(str(cfg.session_path)), sessions_enabled=False,
                terminal=False, reporter=Reports())
worker.start()
until(lambda: worker.datalayer.schema_ready, "the schema")
deliver(worker.client, ConnectedEv(status=True))
until(lambda: worker.ready()[0], "ready")
c, me = worker.client, "15550001111"
image, _ = wa.sample("image")
kinds = [wa.text("!ping"),
         wa.extended("hi @2222", quoted_id="Q9", quoted_sender="15550002222@s.whatsapp.net",
                     mentions=("15550002222@s.whatsapp.net",), forwarded=True),
         wa.media("image", image, "image/png", caption="look", width=64, height=64),
         wa.location(52.520008, 13.404954, "Berlin"), wa.contact("Ann", "+15550002222"),
         wa.poll(c, "Lunch?", ["pizza", "sushi"]),
         wa.reaction(c, me, me, "M0", "\N{THUMBS UP SIGN}"), wa.edit(me, "M0", "fixed"),
         wa.revoke(me, me, "M0", me)]
for message in kinds:
    deliver(c, wa.event(message, chat=me))
sent = lambda: worker.metrics.value("wabot_webhook_deliveries_total", result="sent")
until(lambda: sent() >= int(sys.argv[1]) and worker.webhooks.depth == 0, "the deliveries")
worker.stop(5.0)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")
                or m in ("wabot.spec", "wabot.status", "wabot.events", "wabot.api",
                         "wabot.account"))
print(json.dumps({"loaded": loaded, "sent": Offline.sent}))
'''


def test_a_worker_delivering_webhook_events_of_every_kind_has_not_loaded_pydantic(
        tmp_path: Path) -> None:
    from tests.worker.receiver import Receiver
    from wabot.events import WebhookPayload

    receiver = Receiver(HOOK_KEY.encode()).start()
    try:
        spec = SPEC.replace("settings: {autoRead: false}", (
            "settings: {autoRead: false}\n  media: {download: metadata}\n"
            f"  webhook: {{url: '{receiver.url}', secretRef: {{name: hook}}, "
            f"events: {json.dumps(HOOK_EVENTS)}}}"))
        # 6 messages, 1 command, a reaction, an edit, a deletion.
        proc = _worker(tmp_path, spec, WEBHOOK_WORKER, "10", WABOT_WEBHOOK_SECRET=HOOK_KEY,
                       WABOT_WEBHOOK_ALLOW_CIDRS="127.0.0.1/32")
        assert proc.returncode == 0, proc.stderr[-3000:]
        got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["loaded"] == []
        assert got["sent"][0].startswith("pong")
        deliveries = list(receiver.unique().values())
    finally:
        receiver.stop()
    assert deliveries and all(d.signature_ok for d in deliveries)
    payloads = [WebhookPayload.model_validate_json(d.body) for d in deliveries]  # the schema
    by_event: dict[str, list[Any]] = {}
    for p in payloads:
        by_event.setdefault(p.event, []).append(p.data)
    types = [m.type for m in by_event["message"]]
    assert types == ["text", "text", "image", "location", "contact", "poll"], types
    image = by_event["message"][2]
    assert image.media.status == "metadata" and image.media.width == 64 and image.caption == "look"
    assert by_event["message"][1].quoted.message_id == "Q9"
    assert by_event["message"][3].location.latitude == 52.520008
    assert [c.command for c in by_event["command"]] == ["ping"]
    assert by_event["message.reaction"][0].emoji == "\N{THUMBS UP SIGN}"
    assert by_event["message.edited"][0].text == "fixed"
    assert by_event["message.revoked"][0].target_message_id == "M0"
