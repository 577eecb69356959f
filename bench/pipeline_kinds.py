"""Pipeline throughput with every kind of message (issue 24) against text only, in one run.

The worker is the real one with its default spec.media (`metadata`: files are described, not
downloaded), fed real MessageEv bytes of each kind (tests/support/wamessages.py: neonize's own
protobufs and builders) through neonize's real dispatcher. Every other message is a command,
so the run ends at a reply and the pipeline's order says everything before it was handled:

- text only: `!ping` and `hello there`, alternating;
- mix: `!ping` carried by text, extended text with a quote and mentions, an image, video or
  document caption, a document-with-caption, a view-once image and a disappearing text,
  alternating with a non-command of another kind: a voice note, a sticker, a location, a live
  location, a contact, contacts, a poll, a reaction, an edit, a deletion, an unknown kind.

Both are driven the same way: at most WINDOW commands unanswered, so at most 2 x WINDOW
messages in flight; rounds of at most ROUND messages, each with full rate-limit buckets. The
two alternate (text, mix, text, mix, ...) so a machine's drift hits both, and each pair gives
a ratio; the median of the pairs' ratios is the figure (target: the mix at >= 90 % of text
only), by wall-clock throughput and by the process's CPU time per message (which other
processes' load on a shared machine moves much less).

The alternation is the worst case for CPython: each message takes another path through the
same functions, so the interpreter's per-call-site caches keep missing. Measured here (the
pipeline alone, one thread, 40 rounds, median us per message): text 64.5, every kind
interleaved 76.4, the same messages grouped by kind 65.2. No kind costs much more than text
on its own; the interleaving does.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Result, at_least, log

WINDOW = 100
ROUND = 4000  # messages; half are commands: under the 6,000/min bot bucket with room


def _carriers(client: Any) -> list[Callable[[str], Any]]:
    """Ways a `!ping` arrives, each as WhatsApp would deliver it."""
    from tests.support import wamessages as wa

    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    return [
        wa.text,
        lambda t: wa.extended(t, quoted_id="Q1", quoted_sender="15550002222@s.whatsapp.net",
                              mentions=("15550002222@s.whatsapp.net",)),
        lambda t: wa.media("image", jpeg, "image/jpeg", caption=t, width=640, height=480),
        lambda t: wa.media("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4", caption=t,
                           seconds=3),
        lambda t: wa.media("document", b"%PDF-1.7", "application/pdf", caption=t),
        # whatsmeow unwraps document-with-caption, view-once and disappearing messages and
        # says so in flags (IsDocumentWithCaption, IsViewOnce, IsEphemeral): KindEvents sets
        # them for these three.
        lambda t: wa.media("document", b"%PDF-1.7", "application/pdf", caption=t),
        lambda t: wa.media("image", jpeg, "image/jpeg", caption=t),
        wa.text,
    ]
_FLAGS = {5: {"document_with_caption": True}, 6: {"view_once": True}, 7: {"ephemeral": True}}


def _others(client: Any) -> list[Any]:
    """Non-commands of every other kind."""
    from tests.support import wamessages as wa

    E = wa.e2e()
    chat = "15550001111"
    return [
        wa.media("voice", b"OggS" + b"\x00" * 64, "audio/ogg; codecs=opus", seconds=2),
        wa.media("sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        wa.location(52.52, 13.40, "Office"),
        wa.location(52.52, 13.40, "on my way", live=True),
        wa.contact("Ann", "+15550001111"),
        wa.contacts(("Ann", "+15550001111"), ("Bob", "+15550002222")),
        wa.poll(client, "Lunch?", ["pizza", "sushi", "salad"]),
        wa.reaction(client, chat, chat, "M0", "👍"),
        wa.edit(chat, "M0", "fixed"),
        wa.revoke(chat, chat, "M0", chat),
        E.Message(eventMessage=E.EventMessage(name="party")),
    ]


class KindEvents:
    """Serialized MessageEv bytes, commands on odd positions (so the last one is a command)."""

    def __init__(self, client: Any, count: int, prefix: str, mixed: bool) -> None:
        from neonize.events import EVENT_TO_INT, MessageEv

        from tests.support import wamessages as wa

        self.kind = EVENT_TO_INT[MessageEv]
        carriers = _carriers(client) if mixed else [wa.text]
        others = _others(client) if mixed else [wa.text("hello there")]
        self.buffers: list[tuple[Any, int, str | None]] = []
        for i in range(count):
            chat = f"1555{i % 200:07d}"
            msg_id = f"{prefix}{i:07d}"
            flags: dict[str, bool] = {}
            if i % 2:
                which = (i // 2) % len(carriers)
                message = carriers[which]("!ping")
                flags = _FLAGS.get(which, {}) if mixed else {}
            else:
                message = others[(i // 2) % len(others)]
            ev = wa.event(message, chat=chat, msg_id=msg_id, **flags)
            data = ev.SerializePartialToString()
            self.buffers.append((ctypes.create_string_buffer(data, len(data)), len(data),
                                 msg_id if i % 2 else None))

    def __len__(self) -> int:
        return len(self.buffers)

    def feed(self, client: Any, i: int) -> None:
        buf, n, _ = self.buffers[i]
        client.event.execute(0, ctypes.addressof(buf), n, self.kind)


def drive(wut: Any, events: KindEvents, timeout: float = 120.0) -> tuple[float, float]:
    """(messages per second, CPU microseconds of the whole process per message), fed with at
    most WINDOW commands unanswered. The CPU figure hardly moves with other processes' load
    on a shared machine; the rate does."""
    n = len(events)
    elapsed = 0.0
    cpu_began = time.process_time()
    for start in range(0, n, ROUND):
        stop = min(n, start + ROUND)
        wut.fresh_limiter()
        commands = sum(1 for i in range(start, stop) if events.buffers[i][2])
        wut.rec.reset(WINDOW, commands)
        began = time.perf_counter()
        for i in range(start, stop):
            if events.buffers[i][2]:
                wut.rec.slots.acquire()
            events.feed(wut.client, i)
        if not wut.rec.wait(timeout):
            raise TimeoutError(f"only {wut.rec.count} of {commands} commands answered")
        elapsed += max(wut.rec.sent.values()) - began
    return n / elapsed, (time.process_time() - cpu_began) * 1e6 / n


def run(n: int = 4000, repeats: int = 9) -> Result:
    """`repeats` pairs of rounds of `n` messages, text then mix; the ratios are per pair."""
    from bench.pipeline import WorkerUnderTest

    res = Result("pipeline_kinds", "Pipeline: every kind of message vs text only (same run)")
    res.note(__doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
    rates: dict[str, list[float]] = {"text": [], "mix": []}
    cpu: dict[str, list[float]] = {"text": [], "mix": []}
    with tempfile.TemporaryDirectory(prefix="wabot-bench-kinds-") as tmp_s:
        wut = WorkerUnderTest(Path(tmp_s), "none", None)
        try:
            wut.start()
            for name in rates:  # warm-up of both paths, untimed
                drive(wut, KindEvents(wut.client, 1000, f"W{name}", name == "mix"))
            for r in range(repeats):
                log(f"pipeline kinds: pair {r + 1}/{repeats}")
                # Both rounds' bytes built first, and collected garbage, outside the timed
                # region; the order alternates, so neither kind always runs second.
                pair = {name: KindEvents(wut.client, n, f"{name[0].upper()}{r}x",
                                         name == "mix") for name in rates}
                for name in (("text", "mix") if r % 2 == 0 else ("mix", "text")):
                    gc.collect()
                    rate, us = drive(wut, pair[name])
                    rates[name].append(rate)
                    cpu[name].append(us)
            dropped = wut.dropped()
        finally:
            wut.stop()
    rate_ratio = statistics.median(m / t for m, t in zip(rates["mix"], rates["text"],
                                                         strict=True))
    cpu_ratio = statistics.median(t / m for m, t in zip(cpu["mix"], cpu["text"], strict=True))
    res.extra.update({"messages_per_s": rates, "cpu_us_per_message": cpu, "dropped": dropped})
    for name, label in (("text", "text only"), ("mix", "every kind")):
        res.add(f"{label}: messages/s (half commands)", statistics.median(rates[name]),
                "msg/s", note="per round: " + ", ".join(f"{x:.0f}" for x in rates[name]))
        res.add(f"{label}: process CPU per message", statistics.median(cpu[name]), "us",
                note="per round: " + ", ".join(f"{x:.0f}" for x in cpu[name]))
    res.add("every kind / text only, throughput (median of pairs)", rate_ratio, "x",
            target=">= 0.90", met=at_least(rate_ratio, 0.90))
    res.add("every kind / text only, by CPU per message (median of pairs)", cpu_ratio, "x",
            target=">= 0.90", met=at_least(cpu_ratio, 0.90),
            note="text CPU / mix CPU: the figure other processes' load moves least")
    if any(dropped.values()):
        res.note(f"drops: {dropped}")
    return res


if __name__ == "__main__":
    import sys

    out = run(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
    for m in out.metrics:
        print(f"{m.name}: {m.value} {m.unit} {m.target or ''} {m.note}")
