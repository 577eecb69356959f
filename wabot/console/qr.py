"""The pairing QR as the console's pages show it: an SVG drawn by segno (a maintained QR
library), so the page holds an image and never the payload itself."""

from __future__ import annotations

import io

import segno


def qr_svg(payload: str) -> bytes:
    """Error level M and a 4-module quiet zone: what phone cameras read from a screen."""
    out = io.BytesIO()
    segno.make_qr(payload, error="m").save(out, kind="svg", scale=6, border=4, dark="#000",
                                           light="#fff", title="pairing QR", xmldecl=False,
                                           svgns=True)
    return out.getvalue()
