"""Incoming WhatsApp messages of every kind, as neonize delivers them: neonize's own protobuf
classes and builders (build_reaction, build_poll_vote_creation, builder.build_edit,
builder.build_revoke, utils.gen_vcard), every field Go sets filled in, media messages with the
encrypted-media reference WhatsApp sends (mediaKey, directPath, fileEncSHA256, ...).

Used by the worker's unit and integration tests alike (tests/worker/unit/test_inbound.py,
tests/worker/test_message_kinds.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

_counter = iter(range(1, 10**9))

MEDIA_FIELD = {"image": "imageMessage", "video": "videoMessage", "audio": "audioMessage",
               "voice": "audioMessage", "document": "documentMessage",
               "sticker": "stickerMessage"}


def jid(user: str, server: str = "s.whatsapp.net") -> Any:
    from neonize.utils import build_jid

    return build_jid(user, server)


def info(chat: str = "15550001111", sender: str | None = None, *, msg_id: str | None = None,
         group: bool = False, sender_alt: Any = None, sender_server: str = "s.whatsapp.net",
         from_me: bool = False, push_name: str = "Tester") -> Any:
    """A MessageInfo with every field whatsmeow sets (proto2 `required` ones included)."""
    from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource

    empty = jid("", "")
    return MessageInfo(
        MessageSource=MessageSource(
            Chat=jid(chat, "g.us" if group else "s.whatsapp.net"),
            Sender=jid(sender or chat, sender_server), IsFromMe=from_me, IsGroup=group,
            SenderAlt=sender_alt if sender_alt is not None else empty, RecipientAlt=empty,
            BroadcastListOwner=empty,
        ),
        ID=msg_id or f"IN{next(_counter)}", ServerID=0, Type="text", Pushname=push_name,
        Timestamp=int(time.time() * 1000), Category="", Multicast=False, MediaType="", Edit="",
    )


def event(message: Any, *, view_once: bool = False, ephemeral: bool = False,
          document_with_caption: bool = False, **info_kw: Any) -> Any:
    """A MessageEv around a waE2E Message, as the Go side serializes it. whatsmeow unwraps
    view-once, disappearing and document-with-caption messages itself and says so in these
    flags; the wrappers (view_once(), ephemeral(), ...) are what an older path delivers."""
    from neonize.events import MessageEv

    return MessageEv(
        Info=info(**info_kw), Message=message, IsEphemeral=ephemeral, IsViewOnce=view_once,
        IsViewOnceV2=False, IsViewOnceV2Extension=False,
        IsDocumentWithCaption=document_with_caption,
        IsLottieSticker=False, IsEdit=False, UnavailableRequestID="", RetryCount=0,
    )


# whatsmeow's events.Message.UnwrapRaw, in its order: the wrappers the Go side removes before
# it dispatches a message (so before neonize sees it), and the MessageEv flags each one sets.
_UNWRAPPED_BY_WHATSMEOW: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("deviceSentMessage", ()), ("botInvokeMessage", ()), ("ephemeralMessage", ("IsEphemeral",)),
    ("viewOnceMessage", ("IsViewOnce",)), ("viewOnceMessageV2", ("IsViewOnce", "IsViewOnceV2")),
    ("viewOnceMessageV2Extension", ("IsViewOnce", "IsViewOnceV2", "IsViewOnceV2Extension")),
    ("lottieStickerMessage", ("IsLottieSticker",)),
    ("documentWithCaptionMessage", ("IsDocumentWithCaption",)), ("editedMessage", ("IsEdit",)),
)


def delivered(message: Any, **info_kw: Any) -> Any:
    """The MessageEv neonize delivers for `message` as it came off the wire: whatsmeow's
    UnwrapRaw has taken the content out of its wrappers (flagging each), and the raw message's
    messageContextInfo rides along when the content has none. An edit built by neonize's
    build_edit arrives this way: a protocolMessage of type MESSAGE_EDIT with IsEdit set."""
    ev = event(message, **info_kw)
    content = message
    for name, flags in _UNWRAPPED_BY_WHATSMEOW:
        inner = content_of(getattr(content, name)) if content.HasField(name) else None
        if inner is not None:
            content = inner
            for flag in flags:
                setattr(ev, flag, True)
    if content is not message:
        ev.Message.CopyFrom(content)
        if not content.HasField("messageContextInfo") and message.HasField(
                "messageContextInfo"):
            ev.Message.messageContextInfo.CopyFrom(message.messageContextInfo)
    return ev


def content_of(wrapper: Any) -> Any:
    """A wrapper's message, None when it carries none (whatsmeow's GetMessage() != nil)."""
    return wrapper.message if wrapper.HasField("message") else None


def e2e() -> Any:
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2

    return WAWebProtobufsE2E_pb2


def text(body: str) -> Any:
    return e2e().Message(conversation=body)


def extended(body: str, *, quoted_id: str = "", quoted_sender: str = "",
             mentions: tuple[str, ...] = (), forwarded: bool = False) -> Any:
    E = e2e()
    ctx = E.ContextInfo(stanzaID=quoted_id or None, participant=quoted_sender or None,
                        mentionedJID=list(mentions), isForwarded=forwarded or None,
                        forwardingScore=3 if forwarded else None,
                        quotedMessage=E.Message(conversation="earlier") if quoted_id else None)
    return E.Message(extendedTextMessage=E.ExtendedTextMessage(text=body, contextInfo=ctx))


def media(kind: str, data: bytes, mimetype: str, *, caption: str = "", file_name: str = "",
          declared_size: int | None = None, declared_sha256: bytes | None = None,
          seconds: int | None = None, width: int | None = None, height: int | None = None,
          ) -> Any:
    """A media message as WhatsApp delivers it: the file's own size and SHA-256 as declared
    by the sender (overridable, to lie), and the reference to its encrypted copy."""
    E = e2e()
    field = MEDIA_FIELD[kind]
    cls = {"imageMessage": E.ImageMessage, "videoMessage": E.VideoMessage,
           "audioMessage": E.AudioMessage, "documentMessage": E.DocumentMessage,
           "stickerMessage": E.StickerMessage}[field]
    encrypted = os.urandom(len(data) + 16 - len(data) % 16 + 10)
    direct = f"/v/t62.7118-24/{hashlib.sha256(encrypted).hexdigest()[:24]}.enc"
    body: dict[str, Any] = {
        "URL": f"https://mmg.whatsapp.net{direct}", "directPath": direct,
        "mimetype": mimetype, "mediaKey": os.urandom(32),
        "fileSHA256": declared_sha256 if declared_sha256 is not None
        else hashlib.sha256(data).digest(),
        "fileEncSHA256": hashlib.sha256(encrypted).digest(),
        "fileLength": declared_size if declared_size is not None else len(data),
        "mediaKeyTimestamp": int(time.time()),
    }
    if caption and kind in ("image", "video", "document"):
        body["caption"] = caption
    if kind == "document":
        body["fileName"] = file_name or "file.bin"
    if kind in ("audio", "voice"):
        body["PTT"] = kind == "voice"
    names = {f.name for f in cls.DESCRIPTOR.fields}
    if seconds is not None and "seconds" in names:
        body["seconds"] = seconds
    if width is not None and "width" in names:
        body["width"], body["height"] = width, height or width
    return E.Message(**{field: cls(**body)})


def location(lat: float, lon: float, name: str = "", live: bool = False) -> Any:
    E = e2e()
    if live:
        return E.Message(liveLocationMessage=E.LiveLocationMessage(
            degreesLatitude=lat, degreesLongitude=lon, caption=name, sequenceNumber=7,
            accuracyInMeters=12))
    return E.Message(locationMessage=E.LocationMessage(
        degreesLatitude=lat, degreesLongitude=lon, name=name, address="1 Main St"))


def contact(name: str, phone: str) -> Any:
    from neonize.utils import gen_vcard

    E = e2e()
    return E.Message(contactMessage=E.ContactMessage(displayName=name,
                                                      vcard=gen_vcard(name, phone)))


def contacts(*people: tuple[str, str]) -> Any:
    from neonize.utils import gen_vcard

    E = e2e()
    cards = [E.ContactMessage(displayName=n, vcard=gen_vcard(n, p)) for n, p in people]
    return E.Message(contactsArrayMessage=E.ContactsArrayMessage(displayName="people",
                                                                  contacts=cards))


def poll(client: Any, name: str, options: list[str], selectable: int = 1,
         version: str = "pollCreationMessage") -> Any:
    """neonize's own poll builder (v3 on the wire when single-choice); `version` moves it
    to another of the poll fields (v1/v2/v3), as older and newer clients send them."""
    from neonize.utils.enum import VoteType

    built = client.build_poll_vote_creation(
        name, options, VoteType.SINGLE if selectable == 1 else VoteType.MULTIPLE)
    E = e2e()
    present = [fd.name for fd, _ in built.ListFields() if fd.name.startswith("pollCreation")]
    body = getattr(built, present[0])
    out = E.Message(messageContextInfo=built.messageContextInfo)
    getattr(out, version).CopyFrom(body)
    return out


def poll_vote(poll_id: str, poll_chat: str, *, from_me_poll: bool = True,
              payload: bytes = b"\x01" * 40, iv: bytes = b"\x02" * 12) -> Any:
    """A poll update: the vote is encrypted with the poll's secret (here: opaque bytes; the
    decryption is neonize's, at the seam)."""
    from neonize.proto.waCommon.WACommon_pb2 import MessageKey

    E = e2e()
    return E.Message(pollUpdateMessage=E.PollUpdateMessage(
        pollCreationMessageKey=MessageKey(remoteJID=poll_chat, fromMe=from_me_poll, ID=poll_id),
        vote=E.PollEncValue(encPayload=payload, encIV=iv),
        senderTimestampMS=int(time.time() * 1000)))


def reaction(client: Any, chat: str, target_sender: str, target_id: str, emoji: str) -> Any:
    return client.build_reaction(jid(chat), jid(target_sender), target_id, emoji)


def edit(chat: str, target_id: str, new_text: str) -> Any:
    from neonize.builder import build_edit

    return build_edit(jid(chat), target_id, text(new_text))


def revoke(chat: str, sender: str, target_id: str, me: str, *, group: bool = False) -> Any:
    from neonize.builder import build_revoke

    chat_jid = jid(chat, "g.us" if group else "s.whatsapp.net")
    return build_revoke(chat_jid, jid(sender), target_id, jid(me))


def view_once(inner: Any, v2: bool = True) -> Any:
    E = e2e()
    wrapper = E.FutureProofMessage(message=inner)
    return E.Message(**{"viewOnceMessageV2" if v2 else "viewOnceMessage": wrapper})


def ephemeral(inner: Any) -> Any:
    E = e2e()
    return E.Message(ephemeralMessage=E.FutureProofMessage(message=inner))


def document_with_caption(inner: Any) -> Any:
    E = e2e()
    return E.Message(documentWithCaptionMessage=E.FutureProofMessage(message=inner))


def device_sent(inner: Any, destination: str) -> Any:
    E = e2e()
    return E.Message(deviceSentMessage=E.DeviceSentMessage(destinationJID=destination,
                                                           message=inner))


# A file of each kind that passes the worker's checks (botworker/core/media_check.py): the
# format's real leading bytes, then padding to `size`. For tests and the density benchmark's
# "RSS after handling each kind of media".
_HEADERS = {
    "image": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    "sticker": (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    "video": (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
    "audio": (b"ID3\x04\x00\x00", "audio/mpeg"),
    "voice": (b"OggS\x00\x02", "audio/ogg; codecs=opus"),
    "document": (b"%PDF-1.7\n", "application/pdf"),
}


def sample(kind: str, size: int = 64 * 1024) -> tuple[bytes, str]:
    """(bytes, mimetype) of a `size`-byte file of `kind` (image, sticker, video, audio, voice,
    document)."""
    head, mime = _HEADERS[kind]
    return head + b"\x00" * max(0, size - len(head)), mime


def media_event(kind: str, size: int = 64 * 1024, **event_kw: Any) -> tuple[Any, bytes]:
    """A received media message of `kind` and the file its download gives back: register
    `(message's directPath -> bytes)` with the client's download_any seam, then dispatch."""
    data, mime = sample(kind, size)
    message = media(kind, data, mime, caption="" if kind in ("audio", "voice", "sticker")
                    else f"a {kind}")
    return event(message, **event_kw), data


def direct_path(ev: Any) -> str:
    """The directPath of a media MessageEv (what a download_any seam is keyed by)."""
    for _, body in ev.Message.ListFields():
        path = getattr(body, "directPath", "")
        if path:
            return str(path)
    raise ValueError("not a media message")
