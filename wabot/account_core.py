"""The account contract's plain parts, without pydantic: the patterns a user and a group are
addressed by, the error an account operation raises, and the helpers that take validated values
apart. The worker's account routes and plugins' `ctx.account` use these without loading the
models (bench/PROFILE-density.md, "pydantic out of the worker"); wabot/account.py re-exports
them with its models.
"""

from __future__ import annotations

import re

# A phone number (E.164 digits, optional '+') or a user JID: what a person is addressed by.
USER_PATTERN = r"^(\+?[1-9][0-9]{6,14}|[0-9]{5,20}(:[0-9]{1,3})?@(s\.whatsapp\.net|lid))$"
# A group JID ("<digits>@g.us", or the old "<creator>-<time>@g.us"), or its bare id.
GROUP_PATTERN = r"^[0-9]{5,20}(-[0-9]{1,20})?(@g\.us)?$"

_DIGITS = re.compile(r"^\+?([0-9]+)$")


class AccountError(Exception):
    """An account operation refused or failed (a plugin's `ctx.account` raises it; the API
    answers with it): the HTTP status, a machine-readable code, and what happened."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 retry_after: int | None = None, phase: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.retry_after, self.phase = field, retry_after, phase


def user_parts(value: str) -> tuple[str, str]:
    """(user, server) of a validated USER_PATTERN value: a phone number is a user at
    s.whatsapp.net; a device suffix (":12") is dropped, a person is addressed, not a device."""
    m = _DIGITS.match(value)
    if m:
        return m.group(1), "s.whatsapp.net"
    user, server = value.split("@", 1)
    return user.split(":", 1)[0], server


def group_user(value: str) -> str:
    """The user part of a validated GROUP_PATTERN value."""
    return value.split("@", 1)[0]
