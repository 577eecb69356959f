"""A text reply quoting the message it answers: the same protobuf neonize's
`build_reply_message` makes, without its two costs.

neonize's builder clears the quoted message's `contextInfo` *in the received message itself*
(`_make_quoted_message` calls `.Clear()` on it before copying), so a command handler that
replied and then read `ctx.message` found its quote and mentions gone. And it copies the
quoted message three times (into a ContextInfo, into the text's ContextInfo, into the
Message): ~10 us for a `!ping`, a fifth of a command's whole cost. Here the quoted message is
copied once, straight into its place, and the copy is what loses its `contextInfo`.

The result is byte for byte neonize's (tests/worker/unit/test_reply.py compares the two for
every kind of quoted message); the rare reply that mentions a group (`@<id>@g.us`, which
neonize resolves with a group-info query over the network) is left to neonize's builder,
given a copy of the message to clear.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from typing import Any

# neonize's own patterns (NewClient._parse_mention, _parse_group_mention).
_MENTION = re.compile(r"@([0-9]{5,16}|0)")
_GROUP_MENTION = re.compile(r"@([0-9-]{11,26}|0)@g\.us")


@functools.cache
def _neonize() -> tuple[type, Callable[[Any], Any]]:
    """waE2E.Message and neonize's get_message_type, imported at the first reply."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
    from neonize.utils.message import get_message_type

    return Message, get_message_type


def build_reply(client: Any, text: str, quoted: Any) -> Any:
    """The waE2E Message of `text` quoting `quoted` (a MessageEv), as
    `client.build_reply_message(text, quoted)` builds it; `quoted` is left untouched."""
    if _GROUP_MENTION.search(text) is not None:
        return client.build_reply_message(text, _copy_of(quoted))
    message_cls, get_message_type = _neonize()
    message = message_cls()
    reply = message.extendedTextMessage
    reply.text = text
    ctx = reply.contextInfo
    ctx.SetInParent()  # neonize always sets it, even with nothing but the quote
    mentions = [m.group(1) + "@s.whatsapp.net" for m in _MENTION.finditer(text)]
    if mentions:
        ctx.mentionedJID.extend(mentions)
    ctx.stanzaID = quoted.Info.ID
    ctx.participant = _author(quoted.Info.MessageSource)
    ctx.quotedMessage.CopyFrom(quoted.Message)
    try:
        content = get_message_type(ctx.quotedMessage)
    except IndexError:  # nothing neonize counts as content: it would have failed here too
        raise ValueError("the quoted message has no content") from None
    if not isinstance(content, str):
        # The copy's: the quote of a quote is not repeated. A content field without a
        # contextInfo (a key share) is left alone, as neonize does (it logs and goes on).
        with contextlib.suppress(AttributeError):
            content.contextInfo.Clear()
    return message


def _author(source: Any) -> str:
    """Who wrote the quoted message, as neonize names it: the sender without its device, its
    phone-number JID when it wrote from an @lid and the server sent both."""
    sender = source.Sender
    if sender.Server == "lid" and source.SenderAlt.ListFields():
        sender = source.SenderAlt
    return f"{sender.User}@{sender.Server}" if sender.User else str(sender.Server)


def _copy_of(ev: Any) -> Any:
    copy = type(ev)()
    copy.CopyFrom(ev)
    return copy
