"""The account's routes (session, groups, contacts, presence: wabot/account.py) in
gateway/openapi.yaml, generated from the models so the document cannot drift from them
(tests/contract/test_account_openapi.py compares the two).

    python -m wabot.account_openapi     # print the paths and components to paste
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import account as a
from .openapi30 import dump, openapi30

REF = "#/components/schemas/"
BOT = "/v1/bots/{namespace}/{bot}/"
_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_GROUP = {"name": "group", "in": "path", "required": True,
          "description": "The group: its id, or `<id>@g.us`.",
          "schema": {"type": "string", "maxLength": 64, "pattern": a.GROUP_PATTERN}}
_USER = {"name": "user", "in": "path", "required": True,
         "description": "A phone number (E.164 digits, `+` optional) or a user JID.",
         "schema": {"type": "string", "maxLength": 64, "pattern": a.USER_PATTERN}}
_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"}}
_ERRORS = {
    "401": "No API key, or an unknown one.",
    "404": "No such bot for this API key; or (group_not_found, not_on_whatsapp) no such "
           "group of the bot's, or the number is not on WhatsApp.",
    "409": "Refused in the bot's current state (session_action_rejected, "
           "session_action_in_progress).",
    "403": "not_an_admin: the bot is not an admin of this group.",
    "410": "invite_revoked: the invite link was reset or has expired.",
    "413": "The body is too large (a group photo: at most 1 MiB).",
    "422": "Malformed input; `field` names it.",
    "429": "The bot's rate limit (spec.rateLimit): retry after `Retry-After` seconds.",
    "502": "WhatsApp did not carry it out; retry later.",
    "503": "The bot is not connected (`phase`) or cannot be reached; retry after "
           "`Retry-After` seconds.",
    "504": "The bot did not answer in time.",
}
# (method, path, operationId, summary, request model | "jpeg" | None, status, answer model,
#  error statuses)
_WRITE = ("401", "404", "403", "422", "429", "502", "503", "504")
_READ = ("401", "404", "422", "502", "503", "504")
_SESSION = ("401", "404", "409", "422", "502", "503", "504")
OPERATIONS: list[tuple[str, str, str, str, Any, str, type[BaseModel] | None,
                       tuple[str, ...]]] = [
    ("get", "session", "getSession", "Where the bot's WhatsApp session stands", None, "200",
     a.SessionView, ("401", "404", "503", "504")),
    ("post", "session/logout", "sessionLogout", "Log out: unlink the phone, wipe the "
     "session, restart into pairing", None, "202", a.SessionActionResponse, _SESSION),
    ("post", "session/restart", "sessionRestart", "Restart the WhatsApp connection", None,
     "202", a.SessionActionResponse, _SESSION),
    ("post", "session/pairing", "sessionPairing", "A fresh QR code or a pairing code (not "
     "while paired)", a.PairingRequest, "202", a.SessionActionResponse, _SESSION),
    ("get", "groups", "listGroups", "The groups the bot is in", None, "200", a.GroupList,
     _READ),
    ("post", "groups", "createGroup", "Create a group", a.CreateGroupRequest, "201",
     a.GroupView, _WRITE),
    ("post", "groups/join", "joinGroup", "Join a group by its invite link",
     a.JoinGroupRequest, "200", a.JoinGroupResponse, (*_WRITE, "410")),
    ("get", "groups/{group}", "getGroup", "A group's info and participants", None, "200",
     a.GroupView, _READ),
    ("post", "groups/{group}/name", "renameGroup", "Rename a group", a.GroupNameRequest,
     "200", a.GroupView, _WRITE),
    ("post", "groups/{group}/description", "describeGroup", "Set a group's description",
     a.GroupDescriptionRequest, "200", a.GroupView, _WRITE),
    ("post", "groups/{group}/settings", "setGroupSettings", "Only admins send (announce) / "
     "edit the info (locked)", a.GroupSettingsRequest, "200", a.GroupView, _WRITE),
    ("post", "groups/{group}/photo", "setGroupPhoto", "Set a group's photo (a JPEG, at most "
     "1 MiB)", "jpeg", "200", None, (*_WRITE, "413")),
    ("post", "groups/{group}/participants", "updateParticipants", "Add, remove, promote or "
     "demote participants", a.ParticipantsRequest, "200", a.ParticipantsResponse, _WRITE),
    ("get", "groups/{group}/invite", "getInviteLink", "A group's invite link", None, "200",
     a.InviteLinkResponse, (*_READ, "403")),
    ("post", "groups/{group}/invite/reset", "resetInviteLink", "A new invite link (the old "
     "one stops working)", None, "200", a.InviteLinkResponse, _WRITE),
    ("post", "groups/{group}/leave", "leaveGroup", "Leave a group", None, "200", None,
     _WRITE),
    ("post", "contacts/check", "checkNumbers", "Which numbers are on WhatsApp (at most 50)",
     a.OnWhatsAppRequest, "200", a.OnWhatsAppResponse, _WRITE),
    ("get", "contacts/{user}", "getContact", "A person's info", None, "200", a.ContactView,
     _READ),
    ("get", "contacts/{user}/picture", "getProfilePicture", "A person's profile picture",
     None, "200", a.ProfilePictureView, _READ),
    ("get", "contacts/{user}/ids", "getContactIds", "The same person by phone number and by "
     "LID", None, "200", a.JidMapping, _READ),
    ("post", "presence", "setOwnPresence", "The bot's own presence", a.OwnPresenceRequest,
     "200", None, _WRITE),
    ("post", "presence/subscribe", "subscribePresence", "Receive a contact's "
     "presence.update events", a.SubscribePresenceRequest, "200", None, _WRITE),
]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: tuple[str, str, str, str, Any, str, Any, tuple[str, ...]]) -> dict[str, Any]:
    method, tail, op_id, summary, request, status, answer, errors = op
    params: list[dict[str, Any]] = [
        {"name": "namespace", "in": "path", "required": True, "schema": _NAME},
        {"name": "bot", "in": "path", "required": True, "schema": _NAME}]
    if "{group}" in tail:
        params.append(_GROUP)
    if "{user}" in tail:
        params.append(_USER)
    if method == "post":
        params.append(_KEY)
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "parameters": params}
    if request == "jpeg":
        out["requestBody"] = {"required": True, "content": {"image/jpeg": {"schema": {
            "type": "string", "format": "binary"}}}}
    elif request is not None:
        out["requestBody"] = {"required": True, "content": _json({"$ref": REF + request.__name__})}
    body = {"$ref": REF + answer.__name__} if answer is not None else {"type": "object"}
    responses: dict[str, Any] = {status: {"description": "Done.", "content": _json(body)}}
    for code in sorted(errors):
        responses[code] = {"description": _ERRORS[code],
                           "content": _json({"$ref": REF + "Error"})}
    out["responses"] = responses
    return out


def paths() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in OPERATIONS:
        out.setdefault(BOT + op[1], {})[op[0]] = _operation(op)
    return out


def components() -> dict[str, Any]:
    """Every model the operations name, and the models those refer to."""
    models: list[type[BaseModel]] = []
    for op in OPERATIONS:
        models += [m for m in (op[4], op[6]) if isinstance(m, type)]
    out: dict[str, Any] = {}
    for model in models:
        for mode in ("validation", "serialization"):
            raw = model.model_json_schema(by_alias=True, mode=mode,
                                          ref_template=REF + "{model}")
            for name, schema in raw.pop("$defs", {}).items():
                out.setdefault(name, openapi30(schema))
            out.setdefault(model.__name__, openapi30(raw))
    return dict(sorted(out.items()))


def main() -> None:
    print("# paths:")
    print(dump(paths(), 2), end="")
    print("# components.schemas:")
    print(dump(components(), 4), end="")


if __name__ == "__main__":
    main()
