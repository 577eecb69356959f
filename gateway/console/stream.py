"""GET /console/api/stream: server-sent events for one open page, fed by the shared watch.

The fleet view gets `rows` events (a snapshot first, then only the rows that changed for this
viewer, and `{gone: true}` for a bot deleted or no longer visible); a bot page
(`?bot=namespace/name`) gets `bot` events with that bot's details. Changes are gathered for a
short moment, so a burst of 1,000 status writes reaches a page as a few messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from .fleet import Key, Subscriber
from .web import ConsoleWeb, refuse

COALESCE_S = 0.05
PING_S = 20.0
RECHECK_S = 60.0


class Stream:
    def __init__(self, console: ConsoleWeb) -> None:
        self.console = console

    async def handle(self, request: web.Request) -> web.StreamResponse:
        viewer = await self.console.viewer(request)
        if viewer is None:
            return refuse(401, "not signed in")
        only: Key | None = None
        if "bot" in request.query:
            ns, _, name = request.query["bot"].partition("/")
            only = (ns, name)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        fleet = self.console.fleet
        sub = Subscriber()
        fleet.subscribers.add(sub)
        fleet.streams.inc()
        sent: dict[Key, dict[str, Any]] = {}
        checked = time.monotonic()
        try:
            await fleet.wait_synced()
            keys = {only} if only else set(fleet.rows)
            await self._send(resp, viewer, keys, sent, only, snapshot=True)
            while not fleet.closing:
                try:
                    await asyncio.wait_for(sub.wake.wait(), PING_S)
                except TimeoutError:
                    await resp.write(b": ping\n\n")
                if fleet.closing:
                    break
                if time.monotonic() - checked > RECHECK_S:
                    checked = time.monotonic()
                    if await self.console.viewer(request) is None:
                        await resp.write(b"event: signedout\ndata: {}\n\n")
                        break
                await asyncio.sleep(COALESCE_S)
                keys = sub.take()
                if only is not None:
                    keys &= {only}
                if keys:
                    await self._send(resp, viewer, keys, sent, only, snapshot=False)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the page went away
        finally:
            fleet.subscribers.discard(sub)
            fleet.streams.dec()
        return resp

    async def _send(self, resp: web.StreamResponse, viewer: Any, keys: set[Key],
                    sent: dict[Key, dict[str, Any]], only: Key | None, *,
                    snapshot: bool) -> None:
        fleet, access = self.console.fleet, self.console.access
        views = fleet.details if only else fleet.rows
        namespaces: dict[str, bool] = {}
        out: list[dict[str, Any]] = []
        for key in sorted(keys):
            view = views.get(key)
            visible = False
            if view is not None:
                if only is not None:
                    visible = await access.may_see_bot(viewer, key[0], key[1], view["tenant"])
                elif viewer.kind == "tenant":
                    visible = view["tenant"] == viewer.name
                else:
                    if key[0] not in namespaces:
                        namespaces[key[0]] = await access.may_list(viewer, key[0])
                    visible = namespaces[key[0]]
            if view is None or not visible:
                if sent.pop(key, None) is not None or (only and snapshot):
                    out.append({"namespace": key[0], "name": key[1], "gone": True})
                continue
            if sent.get(key) is not view:
                sent[key] = view
                out.append(view)
        if not out and not snapshot:
            return
        event = "bot" if only else "rows"
        data = json.dumps({"snapshot": snapshot, "items": out}, separators=(",", ":"))
        await resp.write(f"event: {event}\ndata: {data}\n\n".encode())
