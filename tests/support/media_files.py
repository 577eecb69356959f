"""Real media files for tests, made here: images with PIL, video and audio with ffmpeg (as a
user's files would be: an H.264 MP4, an Ogg Opus voice note, an MP3). Made once per process."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from pathlib import Path


@functools.cache
def png(size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@functools.cache
def jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (80, 60), (30, 200, 30)).save(out, format="JPEG")
    return out.getvalue()


@functools.cache
def webp_sticker() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (512, 512), (30, 30, 200, 128)).save(out, format="WEBP")
    return out.getvalue()


def pdf() -> bytes:
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n"
            b"%%EOF\n")


def _ffmpeg(*args: str, suffix: str) -> bytes:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed to make test media (apt-get install ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"out{suffix}"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, str(out)], check=True,
                       timeout=60)
        return out.read_bytes()


@functools.cache
def mp4() -> bytes:
    return _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=10",
                   "-f", "lavfi", "-i", "sine=duration=2", "-shortest",
                   "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", suffix=".mp4")


@functools.cache
def ogg_opus() -> bytes:
    return _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "libopus",
                   "-b:a", "24k", suffix=".ogg")


@functools.cache
def mp3() -> bytes:
    return _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "libmp3lame",
                   suffix=".mp3")


def multipart(message: bytes, file: bytes | None, *, filename: str = "upload.bin",
              content_type: str = "application/octet-stream",
              boundary: str = "wabot-test-boundary") -> tuple[bytes, str]:
    """(body, Content-Type) of a send request with its file, as curl -F would send it."""
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n"
             f"Content-Type: application/json\r\n\r\n".encode() + message + b"\r\n"]
    if file is not None:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                     f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
                     .encode() + file + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
