"""neonize's optional dependencies are loaded on first use (botworker/lazydeps.py), and
neonize's own media builders still work under that layer.

The layer must be installed before neonize is first imported, which the test process has long
done, so each test runs a fresh interpreter as `wabot worker` starts: layer first, then neonize.
WhatsApp is the real neonize client with only its network method replaced: `upload` answers
with neonize's own UploadResponse instead of reaching WhatsApp's media servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

PRELUDE = """
import io, json, sys
from botworker import lazydeps

assert lazydeps.install(), "neonize was imported before the layer"
import neonize.client
from neonize.client import NewClient
from neonize.proto.Neonize_pb2 import UploadResponse

out = {"deferred": lazydeps.deferred()}


class Offline(NewClient):
    uploads = []

    def upload(self, binary, media_type=None):  # the one seam: WhatsApp's media servers
        self.uploads.append(len(binary))
        return UploadResponse(url="https://mmg.whatsapp.net/v/t62/x", DirectPath="/v/t62/x",
                              MediaKey=b"k" * 32, FileEncSHA256=b"e" * 32,
                              FileSHA256=b"s" * 32, FileLength=len(binary))


client = Offline(sys.argv[1])
"""


def _run(tmp_path: Path, body: str) -> dict[str, Any]:
    script = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "session.sqlite3")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                               "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_importing_neonize_loads_none_of_its_optional_packages(tmp_path: Path) -> None:
    out = _run(tmp_path, """
        heavy = ("PIL", "magic", "linkpreview", "bs4", "requests", "urllib3", "httpx", "rich",
                 "phonenumbers", "tqdm", "segno", "charset_normalizer", "pygments", "click")
        out["real"] = sorted(n for n in heavy if n in sys.modules
                             and not isinstance(sys.modules[n], lazydeps.DeferredModule))
        """)
    assert out["real"] == []
    assert set(out["deferred"]) == set(
        ["PIL", "httpx", "linkpreview", "magic", "phonenumbers", "requests", "segno", "tqdm"])


def test_neonizes_media_builders_work_under_the_layer(tmp_path: Path) -> None:
    out = _run(tmp_path, """
        from PIL import Image as PluginImage  # a plugin's own import, before neonize's use

        png = io.BytesIO()
        PluginImage.new("RGBA", (640, 320), (200, 30, 30, 255)).save(png, format="PNG")
        png = png.getvalue()
        image = client.build_image_message(png, caption="a red box")
        sticker = client.build_sticker_message(png, name="wabot", packname="tests")
        pdf = b"%PDF-1.4\\n1 0 obj<<>>endobj\\ntrailer<<>>\\n%%EOF\\n"
        document = client.build_document_message(pdf, filename="a.pdf", title="A")
        thumb = neonize.client.Image.open(io.BytesIO(image.imageMessage.JPEGThumbnail))
        out.update(
            image=[image.imageMessage.mimetype, image.imageMessage.caption,
                   image.imageMessage.fileLength == len(png)],
            thumbnail=[thumb.format, max(thumb.size)],
            sticker=[sticker.stickerMessage.mimetype, sticker.stickerMessage.isAnimated],
            document=[document.documentMessage.mimetype, document.documentMessage.fileName],
            uploads=len(Offline.uploads),
            plugin_class_is_real=PluginImage.Image.__module__,
            vcard=neonize.utils.gen_vcard("Ann", "+14155550123"),
            left_deferred=lazydeps.deferred(),
        )
        """)
    assert out["image"] == ["image/png", "a red box", True]
    assert out["thumbnail"] == ["JPEG", 200]
    assert out["sticker"] == ["image/webp", False]
    assert out["document"] == ["application/pdf", "a.pdf"]
    assert out["uploads"] == 3
    assert out["plugin_class_is_real"] == "PIL.Image"
    assert "item1.TEL;waid=+14155550123:+1 415-555-0123" in out["vcard"]
    # What was used is real now; what was not is still deferred.
    assert "PIL" not in out["left_deferred"] and "magic" not in out["left_deferred"]
    assert "phonenumbers" not in out["left_deferred"]
    assert "linkpreview" in out["left_deferred"] and "httpx" in out["left_deferred"]


def test_a_plugin_importing_a_deferred_package_gets_the_real_one(tmp_path: Path) -> None:
    """After neonize took stand-ins, an import by anyone else gets the real modules, with
    their classes usable as classes (subclassing, isinstance, except clauses)."""
    out = _run(tmp_path, """
        import requests
        from requests.exceptions import HTTPError
        from phonenumbers import PhoneNumberFormat, parse, format_number

        class Mine(HTTPError):
            pass

        try:
            raise Mine("boom")
        except HTTPError as exc:
            caught = type(exc).__name__
        out.update(
            requests=type(sys.modules["requests"]).__name__,
            caught=caught,
            e164=format_number(parse("+14155550123"), PhoneNumberFormat.E164),
            neonize_sees_same=neonize.utils.parse is not None
            and neonize.utils.format_number(neonize.utils.parse("+14155550123"),
                                            neonize.utils.PhoneNumberFormat.E164),
        )
        """)
    assert out["requests"] == "module"
    assert out["caught"] == "Mine"
    assert out["e164"] == out["neonize_sees_same"] == "+14155550123"


def test_neonizes_async_client_imports_under_the_layer(tmp_path: Path) -> None:
    """neonize.aioze imports submodules of deferred packages (`from requests.exceptions
    import HTTPError`): those load the real package, and its exception classes are real."""
    out = _run(tmp_path, """
        import neonize.aioze.client as aio

        out.update(http_error=[c.__module__ for c in aio.HTTPError.__mro__][:1],
                   still=lazydeps.deferred())
        """)
    assert out["http_error"] == ["requests.exceptions"]
    assert "PIL" in out["still"] and "requests" not in out["still"]
