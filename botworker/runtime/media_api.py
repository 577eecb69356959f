"""GET /v1/media/{id}: a received file, to the tenant (through the gateway's
/v1/bots/{namespace}/{bot}/media/{id}, with the bot's token like every API route).

Files are at most spec.media.maxBytes (64 MiB at most), so one is answered whole; the id is
random and checked against its pattern before any path is built from it.
"""

from __future__ import annotations

import re

from wabot.httproutes import Route
from wabot.httpserver import Request, Response

from ..adapters.media_store import MediaStore
from .api_answers import error

_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9][a-z0-9.+-]{0,127}"
                      r"(; ?[a-z0-9-]{1,32}=[a-z0-9.-]{1,64})?", re.IGNORECASE)


class MediaApi:
    def __init__(self, store: MediaStore) -> None:
        self._store = store

    def routes(self) -> list[Route]:
        return [Route("GET", r"/v1/media/(?P<id>[^/]+)", self.get, auth=True)]

    def get(self, req: Request) -> Response:
        media_id = req.params.get("id", "")
        found = self._store.get(media_id)
        if found is None:
            return error(404, "not_found", "no such media file (it may have expired: "
                         "spec.media.retentionHours)")
        meta, data = found
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                   "ETag": f'"{meta.sha256}"'}
        name = _safe_name(meta.file_name or f"{meta.id}")
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(200, data, _safe_type(meta.mimetype), headers)


def _safe_name(name: str) -> str:
    """A file name the sender chose, safe inside a quoted header value."""
    kept = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in name)
    return kept.strip()[:120] or "file"



def _safe_type(mimetype: str) -> str:
    """The declared type, if it is one (the sender wrote it: never a header injection)."""
    return mimetype if _TYPE_RE.fullmatch(mimetype) else "application/octet-stream"
