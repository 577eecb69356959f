"""An `Outgoing` becomes a WhatsApp message with neonize's own builders and protobuf classes.

The media builders (build_image_message, build_video_message, build_audio_message,
build_document_message, build_sticker_message) run for real: thumbnails and durations with
PIL and ffmpeg/ffprobe, then the client's `upload` (encryption and the upload: the network
seam tests override). They are always given bytes, never a string: given a string, neonize
opens it as a path or downloads it as a URL itself, past the egress policy.

What they cannot process is the sender's fault (422 naming the kind), what fails at the
upload or the send is WhatsApp's (502), and missing ffmpeg is the image's (503): the three
are told apart here, by the exception.

neonize is imported inside the functions: a worker that never sends media pays nothing for
this module (neonize itself is loaded by the connection anyway).
"""

from __future__ import annotations

from typing import Any

from ..core.outgoing import InvalidContent, Outgoing, is_opus
from ..core.recent import Known


class MediaToolsMissing(RuntimeError):
    """ffmpeg/ffprobe are not on PATH: video, audio and animated stickers cannot be built."""


def jid(value: str) -> Any:
    """A neonize JID from "user@server" (or phone digits)."""
    from neonize.utils import build_jid

    from wabot.api import jid_parts

    user, server = jid_parts(value)
    return build_jid(user, server)


def quote_info(quote: Known) -> Any:
    """The ContextInfo of a reply, built as whatsmeow reads it: the quoted message's id
    (stanzaID), its author (participant, without a device part) and what it said."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, Message

    user, _, server = quote.sender.partition("@")
    author = f"{user.split(':', 1)[0]}@{server}" if server else None
    return ContextInfo(stanzaID=quote.message_id, participant=author,
                       quotedMessage=Message(conversation=quote.text or None))


def build(client: Any, out: Outgoing, chat: str) -> Any:
    """The neonize Message for `out`, to `chat`; raises InvalidContent, MediaToolsMissing, or
    neonize's own error when the upload fails."""
    try:
        message = _BUILDERS[out.kind](client, out, chat)
    except (InvalidContent, MediaToolsMissing):
        raise
    except Exception as exc:
        _classify(out.kind, exc)
        raise
    _decorate(message, out)
    return message


def _classify(kind: str, exc: Exception) -> None:
    """Turn a builder's failure into what it means for the caller (returns for a network
    failure, which the caller re-raises)."""
    from neonize.exc import NeonizeError

    if isinstance(exc, NeonizeError) and type(exc).__name__ in ("UploadError",
                                                                "SendMessageError"):
        return
    if isinstance(exc, FileNotFoundError) and "ff" in str(exc):
        raise MediaToolsMissing("ffmpeg/ffprobe are not installed in the worker") from exc
    raise InvalidContent(kind, f"the file cannot be processed as {kind}: it is damaged, cut "
                         f"off or not what it claims ({type(exc).__name__})") from exc


def _decorate(message: Any, out: Outgoing) -> None:
    """The quote and the mentions go into the built message's ContextInfo."""
    if out.quote is None and not out.mentions:
        return
    field = _CONTENT_FIELD.get(out.kind)
    if field is None:
        return
    if field == "extendedTextMessage" and message.HasField("conversation"):
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage

        message.extendedTextMessage.CopyFrom(ExtendedTextMessage(text=message.conversation))
        message.ClearField("conversation")
    info = getattr(message, field).contextInfo
    if out.quote is not None:
        info.MergeFrom(quote_info(out.quote))
    if out.mentions:
        from wabot.api import chat_jid

        info.mentionedJID.extend(chat_jid(m) for m in out.mentions)


_CONTENT_FIELD = {
    "text": "extendedTextMessage", "image": "imageMessage", "video": "videoMessage",
    "audio": "audioMessage", "voice": "audioMessage", "document": "documentMessage",
    "sticker": "stickerMessage", "location": "locationMessage", "contact": "contactMessage",
    "poll": "pollCreationMessage",
}


def _text(client: Any, out: Outgoing, chat: str) -> Any:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    assert isinstance(out.content, str)
    return Message(conversation=out.content)


def _caption(out: Outgoing) -> str | None:
    media = out.media
    return media.caption if media is not None else None


def _image(client: Any, out: Outgoing, chat: str) -> Any:
    media = out.media
    return client.build_image_message(_bytes(out), caption=_caption(out),
                                      viewonce=bool(media and media.view_once))


def _video(client: Any, out: Outgoing, chat: str) -> Any:
    _need_ffmpeg()
    media = out.media
    return client.build_video_message(_bytes(out), caption=_caption(out),
                                      viewonce=bool(media and media.view_once))


def _audio(client: Any, out: Outgoing, chat: str) -> Any:
    _need_ffmpeg()
    data = _bytes(out)
    if out.kind == "voice" and not is_opus(data):
        data = to_opus(data)
    message = client.build_audio_message(data, ptt=out.kind == "voice")
    if out.kind == "voice":
        # What WhatsApp's own clients send for a voice note; libmagic says only audio/ogg.
        message.audioMessage.mimetype = "audio/ogg; codecs=opus"
    elif out.mimetype:
        message.audioMessage.mimetype = out.mimetype
    return message


def to_opus(data: bytes) -> bytes:
    """Audio as a voice note: Ogg Opus, mono, 32 kbit/s (what WhatsApp's own clients record),
    by ffmpeg from a temporary file (MP4/M4A need a seekable input)."""
    import subprocess

    from neonize.utils.ffmpeg import FFmpeg

    with FFmpeg(data) as source:
        done = subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-nostdin", "-i", source.filepath, "-vn", "-ac",
             "1", "-c:a", "libopus", "-b:a", "32k", "-f", "ogg", "pipe:1"],
            capture_output=True, timeout=120, check=False)
    if done.returncode != 0 or not is_opus(done.stdout):
        raise InvalidContent("voice", "the audio cannot be made a voice note (Ogg Opus): it "
                             "is damaged or cut off")
    return done.stdout


def _document(client: Any, out: Outgoing, chat: str) -> Any:
    return client.build_document_message(
        _bytes(out), caption=_caption(out), filename=out.file_name or "file",
        title=out.file_name or "file", mimetype=out.mimetype)


def _sticker(client: Any, out: Outgoing, chat: str) -> Any:
    return client.build_sticker_message(_bytes(out))


def _location(client: Any, out: Outgoing, chat: str) -> Any:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import LocationMessage, Message

    from wabot.api import Location

    loc = out.content
    assert isinstance(loc, Location)
    return Message(locationMessage=LocationMessage(
        degreesLatitude=loc.latitude, degreesLongitude=loc.longitude, name=loc.name,
        address=loc.address))


def _contact(client: Any, out: Outgoing, chat: str) -> Any:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContactMessage, Message
    from neonize.utils import gen_vcard

    from wabot.api import Contact

    card = out.content
    assert isinstance(card, Contact)
    try:
        vcard = gen_vcard(card.name, card.phone.lstrip("+"))
    except Exception:
        raise InvalidContent("contact.phone", "not a valid phone number") from None
    return Message(contactMessage=ContactMessage(displayName=card.name, vcard=vcard))


def _poll(client: Any, out: Outgoing, chat: str) -> Any:
    from neonize.utils.enum import VoteType

    from wabot.api import Poll

    poll = out.content
    assert isinstance(poll, Poll)
    votes = VoteType.SINGLE if poll.selectable_count == 1 else VoteType.MULTIPLE
    return client.build_poll_vote_creation(poll.question, list(poll.options), votes)


def _target(out: Outgoing) -> Known:
    if out.target is None:
        raise InvalidContent(f"{out.kind}.messageId", "no such message")
    return out.target


def _reaction(client: Any, out: Outgoing, chat: str) -> Any:
    from wabot.api import Reaction

    reaction = out.content
    assert isinstance(reaction, Reaction)
    target = _target(out)
    message = client.build_reaction(jid(chat), jid(target.sender or chat), target.message_id,
                                    reaction.emoji)
    if target.from_me:  # whatsmeow compares with its own JID, which a test client lacks
        message.reactionMessage.key.fromMe = True
        message.reactionMessage.key.ClearField("participant")
    return message


def _edit(client: Any, out: Outgoing, chat: str) -> Any:
    from neonize.builder import build_edit
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    from wabot.api import Edit

    edit = out.content
    assert isinstance(edit, Edit)
    return build_edit(jid(chat), _target(out).message_id, Message(conversation=edit.text))


def _delete(client: Any, out: Outgoing, chat: str) -> Any:
    """neonize's build_revoke with the key's author: the bot's own message (fromMe) or, in a
    group, another member's (the bot must be an admin there; WhatsApp decides). Built in
    Python, not with client.revoke_message, which asks the Go side for the bot's own JID."""
    from neonize.builder import build_revoke
    from neonize.proto.Neonize_pb2 import JID

    target = _target(out)
    if target.from_me or not target.sender:
        return build_revoke(jid(chat), JID(), target.message_id, JID())  # key.fromMe
    return build_revoke(jid(chat), jid(target.sender), target.message_id, JID(IsEmpty=True))


def _bytes(out: Outgoing) -> bytes:
    if not out.data:
        raise InvalidContent(out.kind, "no file")
    return bytes(out.data)


def _need_ffmpeg() -> None:
    import shutil

    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise MediaToolsMissing("ffmpeg/ffprobe are not installed in the worker")


_BUILDERS = {
    "text": _text, "image": _image, "video": _video, "audio": _audio, "voice": _audio,
    "document": _document, "sticker": _sticker, "location": _location, "contact": _contact,
    "poll": _poll, "reaction": _reaction, "edit": _edit, "delete": _delete,
}
