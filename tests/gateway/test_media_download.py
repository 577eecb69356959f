"""A received file fetched by the tenant through the gateway (issue 24): the gateway's generic
GET forwarding to the worker's GET /v1/media/{id}, with the tenant's key checked first. The
worker is the real one; its neonize client's download_any (the one call that reaches
WhatsApp's media servers) answers with the test's bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support import wamessages as wa
from tests.worker.conftest import Harness, make_worker, wait_for  # noqa: F401 (the fixture)
from tests.worker.test_message_kinds import JPEG, make_media_worker  # noqa: F401

from .test_uploads import OTHER_KEY, TOKEN, auth, run

Make = Callable[..., Harness]


def test_a_kept_file_is_fetched_through_the_gateway_by_its_tenant_only(
        make_media_worker: Make) -> None:  # noqa: F811
    from wabot.spec import WhatsAppBotSpec

    spec = WhatsAppBotSpec.model_validate({"serverName": "acme", "botId": "b",
                                           "media": {"download": "full"}})
    h = make_media_worker(spec, tenant="acme", bot="b", env={"WABOT_API_TOKEN": TOKEN})
    image = wa.media("image", JPEG, "image/jpeg", caption="receipt")
    h.client.files[image.imageMessage.directPath] = JPEG
    h.feed(wa.event(image))
    store = h.worker.pipeline.kinds.store
    assert store is not None
    wait_for(lambda: store.usage().files == 1, what="the file kept")
    (media_id,) = [p.stem for p in (h.worker.cfg.session_dir / "media").glob("*.bin")]

    async def steps(client: TestClient[Any, Any], _port: int) -> Any:
        path = f"/v1/bots/ns/b/media/{media_id}"
        ok = await client.get(path, headers=auth())
        body = await ok.read()
        return (ok.status, ok.headers.get("Content-Type"), body,
                (await client.get(path, headers=auth(OTHER_KEY))).status,
                (await client.get(path)).status,
                (await client.get("/v1/bots/ns/b/media/AAAAAAAAAAAAAAAAAAAAAA",
                                  headers=auth())).status)

    status, ctype, body, other, keyless, missing = run(h, steps)
    assert (status, ctype, body) == (200, "image/jpeg", JPEG)
    assert (other, keyless, missing) == (404, 401, 404)
