"""/v1/groups: the bot's groups over the API (the gateway forwards
/v1/bots/{namespace}/{bot}/groups... here after its key and tenant checks; POSTs only while the
bot is Connected). The operations and their checks are account_calls.py.

    GET  /v1/groups                               the groups the bot is in
    POST /v1/groups                               create {name, participants}
    POST /v1/groups/join                          join by invite link {link}
    GET  /v1/groups/{group}                       info and participants
    POST /v1/groups/{group}/name                  {name}
    POST /v1/groups/{group}/description           {description}
    POST /v1/groups/{group}/settings              {announce, locked}
    POST /v1/groups/{group}/photo                 a JPEG as the body (image/jpeg)
    POST /v1/groups/{group}/participants          {action: add|remove|promote|demote, ...}
    GET  /v1/groups/{group}/invite                the invite link
    POST /v1/groups/{group}/invite/reset          a new link (the old one stops working)
    POST /v1/groups/{group}/leave
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from wabot.account_core import GROUP_PATTERN
from wabot.httproutes import Route
from wabot.httpserver import Request, Response

from .account_calls import MAX_PHOTO, AccountCalls, OpError
from .api_answers import error, validation_error

if TYPE_CHECKING:  # the API's models are pydantic: imported by the handlers, at the first call
    from pydantic import BaseModel


M = TypeVar("M", bound="BaseModel")
_GROUP = re.compile(GROUP_PATTERN)
G = r"/v1/groups/(?P<group>[^/]+)"


def answer(status: int, body: BaseModel | None) -> Response:
    data = b"{}" if body is None else body.model_dump_json(by_alias=True).encode()
    return Response(status, data)


def failed(exc: OpError) -> Response:
    extra: dict[str, object] = {}
    if exc.field:
        extra["field"] = exc.field
    if exc.retry_after:
        extra["retry_after_seconds"] = exc.retry_after
    if exc.phase:
        extra["phase"] = exc.phase
    answer = error(exc.status, exc.code, exc.message, **extra)
    if exc.status == 503 and "Retry-After" not in answer.headers:
        answer = Response(answer.status, answer.body, answer.content_type,
                          {**answer.headers, "Retry-After": "10"})
    return answer


class Invalid(Exception):
    """A request body the model refuses: `handled` answers it (422 naming the field)."""

    def __init__(self, answer: Response) -> None:
        super().__init__(answer.status)
        self.answer = answer


def parse(model: type[M], req: Request) -> M:
    """The body as `model`; raises Invalid, which `handled` turns into the 422."""
    from pydantic import ValidationError

    try:
        return model.model_validate_json(req.body or b"{}")
    except ValidationError as exc:
        raise Invalid(validation_error(exc)) from None


def handled(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """An OpError from the operation, or an Invalid body, becomes its answer."""
    def run(req: Request) -> Response:
        try:
            return fn(req)
        except Invalid as exc:
            return exc.answer
        except OpError as exc:
            return failed(exc)
    return run


def group_of(req: Request) -> str:
    gid = req.params.get("group", "")
    if not _GROUP.fullmatch(gid):
        raise OpError(422, "invalid_request", "group: not a group id (digits, or "
                      "digits@g.us)", field="group")
    return gid


class GroupsApi:
    def __init__(self, calls: AccountCalls) -> None:
        self._calls = calls

    def routes(self) -> list[Route]:
        c = self._calls
        return [
            Route("GET", "/v1/groups", handled(self.groups)),
            Route("POST", "/v1/groups", handled(self.create)),
            Route("POST", "/v1/groups/join", handled(self.join)),
            Route("GET", G, handled(lambda r: answer(200, c.group(group_of(r))))),
            Route("POST", G + "/name", handled(self.rename)),
            Route("POST", G + "/description", handled(self.describe)),
            Route("POST", G + "/settings", handled(self.settings)),
            Route("POST", G + "/photo", handled(self.photo), max_body=MAX_PHOTO),
            Route("POST", G + "/participants", handled(self.participants)),
            Route("GET", G + "/invite", handled(lambda r: self.invite(r, reset=False))),
            Route("POST", G + "/invite/reset", handled(lambda r: self.invite(r, reset=True))),
            Route("POST", G + "/leave", handled(self.leave)),
        ]

    def groups(self, _req: Request) -> Response:
        from wabot.account import GroupList

        return answer(200, GroupList(groups=self._calls.groups()))

    def create(self, req: Request) -> Response:
        from wabot.account import CreateGroupRequest

        body = parse(CreateGroupRequest, req)
        return answer(201, self._calls.create_group(body.name, body.participants))

    def join(self, req: Request) -> Response:
        from wabot.account import JoinGroupRequest, JoinGroupResponse

        body = parse(JoinGroupRequest, req)
        return answer(200, JoinGroupResponse(group=self._calls.join(body.code())))

    def rename(self, req: Request) -> Response:
        from wabot.account import GroupNameRequest

        gid = group_of(req)
        body = parse(GroupNameRequest, req)
        return answer(200, self._calls.rename(gid, body.name))

    def describe(self, req: Request) -> Response:
        from wabot.account import GroupDescriptionRequest

        gid = group_of(req)
        body = parse(GroupDescriptionRequest, req)
        return answer(200, self._calls.describe(gid, body.description))

    def settings(self, req: Request) -> Response:
        from wabot.account import GroupSettingsRequest

        gid = group_of(req)
        body = parse(GroupSettingsRequest, req)
        if body.announce is None and body.locked is None:
            return error(422, "invalid_request", "announce or locked is required", field="body")
        return answer(200, self._calls.settings(gid, body.announce, body.locked))

    def photo(self, req: Request) -> Response:
        gid = group_of(req)
        self._calls.photo(gid, req.body)
        return answer(200, None)

    def participants(self, req: Request) -> Response:
        from wabot.account import ParticipantsRequest, ParticipantsResponse

        gid = group_of(req)
        body = parse(ParticipantsRequest, req)
        done = self._calls.participants(gid, body.action, body.participants)
        return answer(200, ParticipantsResponse(group=f"{gid.split('@')[0]}@g.us",
                                                action=body.action, participants=done))

    def invite(self, req: Request, *, reset: bool) -> Response:
        from wabot.account import InviteLinkResponse

        gid = group_of(req)
        link = self._calls.invite_link(gid, reset=reset)
        return answer(200, InviteLinkResponse(group=f"{gid.split('@')[0]}@g.us", link=link))

    def leave(self, req: Request) -> Response:
        self._calls.leave(group_of(req))
        return answer(200, None)
