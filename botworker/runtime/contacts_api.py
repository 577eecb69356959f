"""/v1/contacts and /v1/presence: who is on WhatsApp, a person's info, picture and ids, and the
bot's own presence (typing in a chat is POST /v1/chats/{chat}/presence, message_api.py).

    POST /v1/contacts/check          {numbers: [...]} (at most 50): who is on WhatsApp
    GET  /v1/contacts/{user}         info (404 not_on_whatsapp for a number that is not)
    GET  /v1/contacts/{user}/picture the profile picture's URL
    GET  /v1/contacts/{user}/ids     the same person as phone-number JID and as LID
    POST /v1/presence                {presence: available|unavailable}
    POST /v1/presence/subscribe      {jid}: its presence.update events from now on

`{user}` is a phone number (E.164 digits, '+' optional) or a user JID (...@s.whatsapp.net,
...@lid).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from wabot.account_core import USER_PATTERN
from wabot.httproutes import Route
from wabot.httpserver import Request, Response

from .account_calls import AccountCalls, OpError
from .groups_api import answer, handled, parse

U = r"/v1/contacts/(?P<user>[^/]+)"
_USER = re.compile(USER_PATTERN)


def user_of(req: Request) -> str:
    user = unquote(req.params.get("user", ""))
    if not _USER.fullmatch(user):
        raise OpError(422, "invalid_request", "user: a phone number (E.164 digits) or a user "
                      "JID (@s.whatsapp.net, @lid)", field="user")
    return user


class ContactsApi:
    def __init__(self, calls: AccountCalls) -> None:
        self._calls = calls

    def routes(self) -> list[Route]:
        c = self._calls
        return [
            Route("POST", "/v1/contacts/check", handled(self.check)),
            Route("GET", U, handled(lambda r: answer(200, c.contact(user_of(r))))),
            Route("GET", U + "/picture", handled(lambda r: answer(200, c.picture(user_of(r))))),
            Route("GET", U + "/ids", handled(lambda r: answer(200, c.ids(user_of(r))))),
            Route("POST", "/v1/presence", handled(self.presence)),
            Route("POST", "/v1/presence/subscribe", handled(self.subscribe)),
        ]

    def check(self, req: Request) -> Response:
        from wabot.account import OnWhatsAppRequest, OnWhatsAppResponse

        body = parse(OnWhatsAppRequest, req)
        return answer(200, OnWhatsAppResponse(results=self._calls.on_whatsapp(body.numbers)))

    def presence(self, req: Request) -> Response:
        from wabot.account import OwnPresenceRequest

        body = parse(OwnPresenceRequest, req)
        self._calls.set_presence(body.presence)
        return answer(200, None)

    def subscribe(self, req: Request) -> Response:
        from wabot.account import SubscribePresenceRequest

        body = parse(SubscribePresenceRequest, req)
        self._calls.subscribe(body.jid)
        return answer(200, None)
